"""The exported model folder (MODEL_URI of `waveforms train`), for every model kind: its layout, saving and loading.

    MODEL_URI/config.json       the one configuration file: model_kind, model (its configuration), train, sample_rate,
                                genres, receptive_field, step, val_bits ± se, baselines, data_profile, precision
    MODEL_URI/model.keras       WaveNet: the whole Keras model          (kind "wavenet")
    MODEL_URI/autoencoder.weights.h5   autoencoder: all its weights     (kind "autoencoder")
    MODEL_URI/primer.wav        WaveNet: training audio that generation continues when given no seed clip (optional)
    MODEL_URI/metrics.json, checkpoints/, tensorboard/   written while training (train.py, checkpoints.py)

The network is rebuilt from config.json and the weights loaded into it (nanoGPT style), so the configuration, not
pickled code, decides the architecture. Older autoencoder folders also hold autoencoder.json ({"model": "autoencoder",
"config": ...}), or only that: they still load. `read` reads config.json once; the StoredModel it returns is what
generate, soundspace, the reports and the pipeline's stages pass along, and it loads the weights (downloaded once from
object storage) on first use.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from waveforms import checkpoints, storage

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
PRIMER_FILE = "primer.wav"
MODEL_FILE = "model.keras"  # WaveNet
WEIGHTS_FILE = "autoencoder.weights.h5"  # autoencoder
LEGACY_AUTOENCODER_CONFIG = "autoencoder.json"  # autoencoder folders written before config.json was the only one
WEIGHTS_FILES = {"wavenet": MODEL_FILE, "autoencoder": WEIGHTS_FILE}  # model kind -> the file holding its weights


def model_config(kind: str, data: dict, source: str = "model config"):
    """The model configuration dataclass of a kind (WaveNetConfig, AutoencoderConfig) from its dict."""
    if kind == "wavenet":
        from waveforms.model import WaveNetConfig

        return WaveNetConfig.from_dict(data, source=source)
    if kind == "autoencoder":
        from waveforms.autoencoder import AutoencoderConfig

        return AutoencoderConfig.from_stored(data, source=source)
    raise ValueError(f"{source}: unknown model kind {kind!r} (known: {', '.join(WEIGHTS_FILES)})")


@dataclass
class StoredModel:
    """An exported model, read once: its configuration now, its network (weights loaded) on first use."""

    uri: str
    kind: str  # "wavenet" | "autoencoder"
    export: dict  # config.json
    config: Any  # WaveNetConfig | AutoencoderConfig
    primer: str | None  # URI of the primer clip, or None
    _network: Any = field(default=None, repr=False)

    @property
    def sample_rate(self) -> int:
        return int(self.export["sample_rate"])

    def require(self, kind: str) -> StoredModel:
        """self, or a clear error when the folder holds another kind of model."""
        if self.kind != kind:
            raise ValueError(
                f"model {self.uri}: holds a {self.kind!r} model, not {kind!r} (train one with --model {kind})"
            )
        return self

    def network(self):
        """The Keras model (WaveNet) or the Autoencoder, rebuilt from the configuration with the saved weights."""
        if self._network is None:
            self._network = _load_network(self)
        return self._network


def _read_model_json(uri: str) -> dict:
    try:
        return storage.read_json_object(uri)
    except ValueError as error:
        raise ValueError(f"model {error}") from None


def _legacy_autoencoder_export(model_uri: str) -> dict | None:
    """config.json's content for an autoencoder folder that holds only autoencoder.json; None when it has neither."""
    uri = storage.join(model_uri, LEGACY_AUTOENCODER_CONFIG)
    if not storage.exists(uri):
        return None
    data = _read_model_json(uri)
    if data.get("model") != "autoencoder" or not isinstance(data.get("config"), dict):
        raise ValueError(f"model {model_uri}: {LEGACY_AUTOENCODER_CONFIG} does not describe an autoencoder")
    config = model_config("autoencoder", data["config"], source=uri)
    return {"model_kind": "autoencoder", "model": data["config"], "sample_rate": config.sample_rate}


def read_export(model_uri: str) -> dict:
    """config.json of an exported model; a clear error when MODEL_URI holds no finished model."""
    uri = storage.join(model_uri, CONFIG_FILE)
    if storage.exists(uri):
        export = _read_model_json(uri)
    else:
        export = _legacy_autoencoder_export(model_uri)
        if export is None:
            raise ValueError(
                f"model {model_uri}: no {CONFIG_FILE}; is it the MODEL_URI of a finished `waveforms train` run?"
            )
    for key in ("model_kind", "model", "sample_rate"):
        if key not in export:
            raise ValueError(f"model {uri}: no {key!r}; not written by `waveforms train`")
    return export


def read(model_uri: str | os.PathLike | StoredModel) -> StoredModel:
    """The exported model at MODEL_URI (local, s3:// or minio://): config.json read and checked, weights not yet.
    A StoredModel is returned as it is, so callers pass along whichever they hold without reading twice."""
    if isinstance(model_uri, StoredModel):
        return model_uri
    model_uri = str(model_uri)
    export = read_export(model_uri)
    kind = export["model_kind"]
    if kind not in WEIGHTS_FILES:
        raise ValueError(f"model {model_uri}: unknown model kind {kind!r} (known: {', '.join(WEIGHTS_FILES)})")
    config = model_config(kind, export["model"], source=storage.join(model_uri, CONFIG_FILE))
    primer = storage.join(model_uri, PRIMER_FILE)
    return StoredModel(model_uri, kind, export, config, primer if storage.exists(primer) else None)


def _load_network(stored: StoredModel):
    weights = storage.join(stored.uri, WEIGHTS_FILES[stored.kind])
    if not storage.exists(weights):
        raise ValueError(f"model {stored.uri}: {WEIGHTS_FILES[stored.kind]} is missing")
    if stored.kind == "wavenet":
        from waveforms.model import build_wavenet

        network = build_wavenet(stored.config)
        keras_model = network
    else:
        from waveforms.autoencoder import build_autoencoder

        network = build_autoencoder(stored.config)
        keras_model = network.model
    if storage.is_remote(weights):
        with tempfile.TemporaryDirectory(prefix="waveforms-model-") as scratch:
            local = os.path.join(scratch, WEIGHTS_FILES[stored.kind])
            storage.download_file(weights, local)
            keras_model.load_weights(local)
    else:
        keras_model.load_weights(weights)
    return network


def save(directory: str | os.PathLike, kind: str, keras_model, export: dict) -> list[str]:
    """Write a local model folder: the kind's weights file and config.json (atomically); -> the names written."""
    if kind not in WEIGHTS_FILES:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(WEIGHTS_FILES)})")
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, WEIGHTS_FILES[kind])
    if kind == "wavenet":
        keras_model.save(weights)
    else:
        keras_model.save_weights(weights)
    storage.write_json(os.path.join(directory, CONFIG_FILE), {**export, "model_kind": kind})
    return [WEIGHTS_FILES[kind], CONFIG_FILE]


def read_run_config(model_uri: str) -> dict:
    """The run's configuration: the exported config.json, or, while a run is still going, the one saved beside its
    checkpoints; it holds model_kind, model and train."""
    config_uri = storage.join(model_uri, CONFIG_FILE)
    if storage.exists(config_uri):
        config = _read_model_json(config_uri)
    else:
        config = checkpoints.read_run_config(model_uri)
        if config is None:
            raise ValueError(f"{model_uri}: neither {CONFIG_FILE} nor a checkpoint run configuration; "
                             f"not written by `waveforms train`")  # fmt: skip
    for key in ("model_kind", "model", "train"):
        if key not in config:
            raise ValueError(f"{config_uri}: no {key!r}; not written by `waveforms train`")
    return config
