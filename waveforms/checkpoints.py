"""Training checkpoints that carry their configuration and survive SIGKILL, on a local path or object storage.

Layout under MODEL_URI (the same locally and remotely):
    checkpoints/run_config.json        {"model_kind", "model": {...}, "train": {...}}: what the weights mean
    checkpoints/ckpt-N.index, .data-*  tf.train.Checkpoint(model, optimizer, step) after step N
    checkpoints/checkpoint             TF's index naming the latest checkpoint; written (and uploaded) last

TF writes the data files first and replaces the index file atomically, so a run killed at any instant leaves the
previous checkpoint intact. For object storage the files are written to a local folder and uploaded in the same order
(data, run config, index last), so a remote reader never sees an index pointing at missing data.
"""

from __future__ import annotations

import json
import logging
import os

from waveforms import storage

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
RUN_CONFIG = "run_config.json"
INDEX_FILE = "checkpoint"  # TF's name for the latest-checkpoint pointer
# Train settings that may change between a run and its resumption: they decide how long and how often, not what is
# learned. Every other setting (model, batch, lengths, learning rate, seed...) must match the checkpoint.
RESUMABLE_CHANGES = frozenset(
    {"steps", "checkpoint_every", "eval_every", "eval_windows", "keep_checkpoints", "time_budget_seconds"}
)


class ConfigMismatchError(ValueError):
    """The checkpoint under MODEL_URI was trained with another configuration than the one requested."""


def read_run_config(model_uri: str) -> dict | None:
    """The run configuration saved beside the checkpoints of model_uri, or None for a fresh model folder."""
    uri = storage.join(model_uri, CHECKPOINT_DIR, RUN_CONFIG)
    if not storage.exists(uri):
        return None
    try:
        return json.loads(storage.read_bytes(uri))
    except ValueError as error:
        raise ConfigMismatchError(f"{uri}: not valid JSON ({error}); move the folder away to start afresh") from error


def check_resumable(saved: dict, requested: dict, model_uri: str) -> None:
    """Raise one ConfigMismatchError listing every difference that would make resuming train another model."""
    differences = []
    if saved.get("model_kind") != requested["model_kind"]:
        differences.append(f"model kind: checkpoint {saved.get('model_kind')!r}, requested {requested['model_kind']!r}")
    for section, ignored in (("model", frozenset()), ("train", RESUMABLE_CHANGES)):
        old, new = saved.get(section, {}), requested[section]
        for key in sorted((set(old) | set(new)) - ignored):
            if old.get(key) != new.get(key):
                differences.append(f"{section}.{key}: checkpoint {old.get(key)!r}, requested {new.get(key)!r}")
    if differences:
        raise ConfigMismatchError(
            f"{model_uri} holds a checkpoint of a different configuration; resume with the same settings "
            f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change) or use a new MODEL_URI:\n  "
            + "\n  ".join(differences)
        )


class CheckpointStore:
    """Saves and restores one tf.train.Checkpoint under MODEL_URI/checkpoints, mirrored to object storage if remote.

    `writer=False` (a non-chief worker of a multi-worker run) saves to a private scratch folder: every worker must take
    part in saving distributed variables, but only the chief's copy is kept.
    """

    def __init__(self, checkpoint, model_uri: str, local_root: str, run_config: dict, keep: int, writer: bool = True):
        import tensorflow as tf

        self.model_uri = model_uri
        self.remote_dir = storage.join(model_uri, CHECKPOINT_DIR) if storage.is_remote(model_uri) else None
        self.local_dir = os.path.join(local_root, CHECKPOINT_DIR)
        self.run_config = run_config
        self.writer = writer
        self.checkpoint = checkpoint
        self.keep = keep
        self.manager = tf.train.CheckpointManager(checkpoint, self.local_dir, max_to_keep=keep)

    def restore_latest(self) -> str | None:
        """Restore the newest checkpoint (downloading it first if remote); -> its path, or None if there is none."""
        if self.remote_dir and storage.exists(storage.join(self.remote_dir, INDEX_FILE)):
            storage.sync_dir_down(self.remote_dir, self.local_dir)
            # a new manager: it learns which checkpoints exist (and may be rotated out) when it is created
            self.manager = type(self.manager)(self.checkpoint, self.local_dir, max_to_keep=self.keep)
        path = self.manager.latest_checkpoint
        if path is None:
            return None
        # assert_existing_objects_matched: every variable of the model and optimizer must come back, or we fail loudly
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self, step: int) -> str:
        """Write the checkpoint of `step` (and the run config) locally, then upload it when MODEL_URI is remote."""
        os.makedirs(self.local_dir, exist_ok=True)
        config_path = os.path.join(self.local_dir, RUN_CONFIG)
        if self.writer and not os.path.exists(config_path):
            _write_json_atomically(config_path, self.run_config)
        path = self.manager.save(checkpoint_number=step)
        if self.writer and self.remote_dir:
            self._upload(path)
        return path

    def _upload(self, path: str) -> None:
        prefix = os.path.basename(path)  # ckpt-N
        names = sorted(os.listdir(self.local_dir))
        for name in names:
            if name.startswith(prefix + "."):
                storage.upload_file(os.path.join(self.local_dir, name), storage.join(self.remote_dir, name))
        storage.upload_file(os.path.join(self.local_dir, RUN_CONFIG), storage.join(self.remote_dir, RUN_CONFIG))
        storage.upload_file(os.path.join(self.local_dir, INDEX_FILE), storage.join(self.remote_dir, INDEX_FILE))
        # The manager deleted checkpoints beyond `keep` locally: mirror that remotely, after the new index is up.
        kept = {name for name in names if name.startswith("ckpt-")}
        for uri in storage.list_files(self.remote_dir):
            name = uri.rsplit("/", 1)[-1]
            if name.startswith("ckpt-") and name not in kept:
                storage.delete(uri)


def _write_json_atomically(path: str, data: dict) -> None:
    temporary = f"{path}.{os.getpid()}.partial"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(temporary, path)
