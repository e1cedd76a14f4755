"""Training checkpoints that carry their configuration and survive SIGKILL, on a local path or object storage.

Layout under MODEL_URI (the same locally and remotely):
    checkpoints/run_config.json        {"model_kind", "model": {...}, "train": {...}}: what the weights mean
    checkpoints/ckpt-N.index, .data-*  tf.train.Checkpoint(model, optimizer, step) after step N
    checkpoints/checkpoint             TF's index naming the latest checkpoint; written (and uploaded) last

TF writes the data files first and replaces the index file atomically, so a run killed at any instant leaves the
previous checkpoint intact. For object storage the files are written to a local folder and uploaded in the same order
(data, run config, index last), so a remote reader never sees an index pointing at missing data.

Restoring trusts the files, not the index: it tries the checkpoints present newest first and falls back to the next
older one when a restore fails (flipped bytes, truncated or missing data, zeroed .index), with a warning naming the
damaged one, which is renamed `damaged-ckpt-N.*` so it is never tried again; the index is rewritten to what was
restored. Temp folders and partial files of killed writes are removed. Only when every checkpoint present is damaged
does training stop (CheckpointError): it never starts again from step 0 over them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

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
# settings added after runs were saved, with the value those runs had: their checkpoints stay resumable
ADDED_LATER = {("train", "input_noise"): 0.0}


CHECKPOINT_FILE = re.compile(r"ckpt-(\d+)\.(index|data-\d+-of-\d+)")
DAMAGED_PREFIX = "damaged-"


class CheckpointError(ValueError):
    """Every checkpoint under MODEL_URI is damaged; the message names them."""


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
            if old.get(key, ADDED_LATER.get((section, key))) != new.get(key):
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

    def __init__(self, checkpoint, model_uri: str, local_root: str, run_config: dict, keep: int, writer: bool = True,
                 lease=None):  # fmt: skip
        import tensorflow as tf

        self.lease = lease  # storage.Lease held on model_uri: checked before every save

        self.model_uri = model_uri
        self.remote_dir = storage.join(model_uri, CHECKPOINT_DIR) if storage.is_remote(model_uri) else None
        self.local_dir = os.path.join(local_root, CHECKPOINT_DIR)
        self.run_config = run_config
        self.writer = writer
        self.checkpoint = checkpoint
        self.keep = keep
        if os.path.isdir(self.local_dir):
            indexed_checkpoint(self.local_dir)  # a damaged index would break the manager: removed, rebuilt on restore
        self.manager = tf.train.CheckpointManager(checkpoint, self.local_dir, max_to_keep=keep)

    def restore_latest(self) -> str | None:
        """Restore the newest intact checkpoint (downloading them first if remote); -> its path, or None if there is
        none. A damaged one is named in a warning and set aside; CheckpointError if every one is damaged."""
        import tensorflow as tf

        if self.remote_dir and storage.list_files(self.remote_dir):
            storage.sync_dir_down(self.remote_dir, self.local_dir)
        if not os.path.isdir(self.local_dir):
            return None
        remove_leftovers(self.local_dir)
        indexed = indexed_checkpoint(self.local_dir)
        damaged = []
        for number in reversed(checkpoint_numbers(self.local_dir)):
            path = os.path.join(self.local_dir, f"ckpt-{number}")
            try:
                # Read (and checksum) every tensor first, without touching the live objects: a failed restore would
                # leave them half-restored and queue deferred restores of the damaged file.
                reader = tf.train.load_checkpoint(path)
                for name in reader.get_variable_to_shape_map():
                    reader.get_tensor(name)
            except Exception as error:  # any read error: fall back to the next older checkpoint
                reason = " ".join(str(error).split())[-200:] or type(error).__name__
                log.warning("checkpoint %s is damaged (%s); falling back to the next older one", path, reason)
                damaged.append(path)
                self._set_aside(number)
                continue
            # assert_existing_objects_matched: every variable of the model and optimizer must come back
            self.checkpoint.restore(path).assert_existing_objects_matched()
            if damaged or indexed is None or os.path.basename(indexed) != os.path.basename(path):
                self._rebuild_index(path)
            # a new manager: it learns which checkpoints exist (and may be rotated out) when it is created
            self.manager = type(self.manager)(self.checkpoint, self.local_dir, max_to_keep=self.keep)
            return path
        if damaged:
            raise CheckpointError(
                f"every checkpoint under {self.model_uri} is damaged ({', '.join(os.path.basename(p) for p in damaged)}"
                f", set aside as {DAMAGED_PREFIX}*): move the folder away to start afresh"
            )
        return None

    def _set_aside(self, number: int) -> None:
        """Rename a damaged checkpoint's files so no later restore tries it (nor uploads it); the bytes stay."""
        for name in os.listdir(self.local_dir):
            match = CHECKPOINT_FILE.fullmatch(name)
            if match and int(match.group(1)) == number:
                os.replace(os.path.join(self.local_dir, name), os.path.join(self.local_dir, DAMAGED_PREFIX + name))

    def _rebuild_index(self, restored: str) -> None:
        """Rewrite TF's index from the checkpoint files present, newest = the one restored."""
        newest = os.path.basename(restored)
        present = [f"ckpt-{n}" for n in checkpoint_numbers(self.local_dir)]
        kept = [name for name in present if name != newest][-(self.keep - 1) :] if self.keep > 1 else []
        lines = [f'model_checkpoint_path: "{newest}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in [*kept, newest]]
        storage.write_bytes(os.path.join(self.local_dir, INDEX_FILE), ("\n".join(lines) + "\n").encode())
        log.warning("rewrote %s to name %s", os.path.join(self.local_dir, INDEX_FILE), restored)

    def save(self, step: int) -> str:
        """Write the checkpoint of `step` (and the run config) locally, then upload it when MODEL_URI is remote."""
        if self.lease is not None:
            self.lease.check()  # another run took the model over (we were thought dead): never overwrite its work
        os.makedirs(self.local_dir, exist_ok=True)
        config_path = os.path.join(self.local_dir, RUN_CONFIG)
        if self.writer and not os.path.exists(config_path):
            storage.write_json(config_path, self.run_config)
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


def indexed_checkpoint(local_dir: str) -> str | None:
    """The checkpoint TF's index file names, or None if there is no index; a damaged index (unparsable, not UTF-8,
    naming nothing) is removed with a warning, and restore_latest rebuilds it from the checkpoint files present."""
    import tensorflow as tf

    path = os.path.join(local_dir, INDEX_FILE)
    if not os.path.exists(path):
        return None
    try:
        state = tf.train.get_checkpoint_state(local_dir)
    except Exception:  # TF raises UnicodeDecodeError on bytes that are not UTF-8
        state = None
    if state is None or not state.model_checkpoint_path:
        log.warning("%s is damaged; rebuilding it from the checkpoint files present", path)
        os.remove(path)
        return None
    return state.model_checkpoint_path


def checkpoint_numbers(local_dir: str) -> list[int]:
    """Steps N with a ckpt-N.index file in local_dir, ascending (whatever TF's index file says)."""
    numbers = set()
    for name in os.listdir(local_dir):
        match = CHECKPOINT_FILE.fullmatch(name)
        if match and match.group(2) == "index":
            numbers.add(int(match.group(1)))
    return sorted(numbers)


def remove_leftovers(local_dir: str) -> None:
    """Remove what killed writes leave: TF's `ckpt-N_temp` folders and `*tempstate*` files, our partial files."""
    for name in os.listdir(local_dir):
        path = os.path.join(local_dir, name)
        if name.endswith("_temp") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif "tempstate" in name or name.endswith((".partial", storage.TEMP_SUFFIX)):
            os.remove(path)
