"""Model kinds the trainer can train (`waveforms train --model KIND`): each task builds a Keras model whose
logits[:, t] predict codes[:, t + 1], and knows its receptive field and window length. The autoencoder's task lives
beside its model (autoencoder.AutoencoderTask); the registry imports each on use, so listing the kinds needs no keras.
"""

from __future__ import annotations

import importlib


class WaveNetTask:
    """Next-sample prediction with a WaveNet: logits[:, t] predicts codes[:, t + 1] (model.py)."""

    kind = "wavenet"

    def __init__(self, config):
        self.config = config.validate()

    @staticmethod
    def load_config(name_or_path: str, **overrides):
        from waveforms.model import load_config

        return load_config(name_or_path, **overrides)

    @staticmethod
    def config_from_dict(data: dict, source: str = "model config"):
        from waveforms.model import WaveNetConfig

        return WaveNetConfig.from_dict(data, source=source)

    @property
    def network(self):
        """The WaveNetConfig of the network that makes the predictions."""
        return self.config

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def conditioned(self) -> bool:
        return self.config.global_condition_classes > 0

    @property
    def max_silence(self) -> int:
        """Digital silence in training windows is cut to this many samples (dataset.shorten_silences): a receptive
        field and a sixteenth, so the model sees silence as long as it can tell, always followed by sound soon after."""
        return self.receptive_field + self.receptive_field // 16

    def window_length(self, target_length: int) -> int:
        """The first receptive_field - 1 positions give the rest full context (their own outputs see zero padding)."""
        return self.receptive_field + target_length - 1

    def build_model(self):
        from waveforms.model import build_wavenet

        return build_wavenet(self.config)

    def model_inputs(self, codes, genre=None) -> dict:
        return {"audio": codes} if genre is None else {"audio": codes, "global_condition": genre}


def next_sample_nll(model, inputs: dict, targets, target_length: int | None, training: bool, network):
    """Mean NLL in nats over the last target_length positions of each window (None: all of them): (B,). network: the
    WaveNetConfig whose output the model gives (its output_mixtures says how to read it)."""
    import tensorflow as tf

    from waveforms import output_head

    outputs = model(inputs, training=training)  # (B, W, Q or 3M)
    if target_length is not None:
        outputs, targets = outputs[:, -target_length:], targets[:, -target_length:]
    # in float32 whatever the compute dtype (mixed precision)
    nll = output_head.nll(outputs, targets, network.output_mixtures, network.quantization_channels)  # (B, T)
    return tf.reduce_mean(nll, axis=1)  # (B,)


# model kind -> "module:class"; imported on use, so the CLI does not import keras to list the kinds
TASKS: dict[str, str] = {
    "wavenet": "waveforms.tasks:WaveNetTask",
    "autoencoder": "waveforms.autoencoder:AutoencoderTask",
}


DEFAULT_CONFIGS = {"wavenet": "small", "autoencoder": "default"}
# TrainConfig fields whose default differs by model kind (the CLI's and the pipeline's defaults; TrainConfig holds the
# rest). The autoencoder trains at 1e-2: over a 600-s budget it reaches held-out bits 2.40 against 2.74-2.78 at 1e-3,
# with the dark-to-bright path in order for 3 seeds of 3 (the plain decoder, without pitch tracking, lost that order
# at 1e-2 and was kept at 1e-3; docs/soundspace_quality.md)
DEFAULT_TRAIN_SETTINGS: dict[str, dict] = {"autoencoder": {"learning_rate": 1e-2}}


def task_class(model_kind: str) -> type:
    if model_kind not in TASKS:
        raise ValueError(f"unknown model kind {model_kind!r}; choose from {', '.join(TASKS)}")
    module_name, class_name = TASKS[model_kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_task(model_kind: str, model_config):
    return task_class(model_kind)(model_config)
