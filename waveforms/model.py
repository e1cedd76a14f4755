"""WaveNet (Keras 3): configuration, named configurations and the full (training) forward pass.

The fast generator in `fastgen.py` mirrors this forward pass one sample at a time and reads the weights by the layer
names below, which are therefore a tested contract (`layer_names`).

    codes (B, T) ──input_embedding──▶ x (B, T, R)
    for each block i (dilation d_i):
        x ──block_i_dilated_conv (causal, K taps, R → 2D)──▶ h  (+ global / local conditioning)
        z = tanh(h[..., :D]) * sigmoid(h[..., D:])                              (B, T, D)
        x = x + block_i_residual(z)                                              (not in the last block: unused)
    skips = skip_projection(concat_i z_i)         one (L·D → S) matmul == Σ_i of L separate 1×1 skip convs
    logits = output_logits(relu(output_hidden(relu(skips)) [+ local]))          (B, T, Q)
                 (with output_mixtures > 0 the same layer gives (B, T, 3M) mixture parameters: output_head.py)

logits[:, t] predicts codes[:, t + 1] and depends only on codes[:, t - receptive_field + 1 : t + 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from waveforms import config as configuration
from waveforms import output_head


@dataclass(frozen=True)
class WaveNetConfig:
    stacks: int = 2  # repetitions of the dilation cycle 1, 2, 4, ... 2**(layers_per_stack-1)
    layers_per_stack: int = 10
    kernel_size: int = 2  # taps of each dilated causal convolution
    residual_channels: int = 32  # R: width of the residual stream
    dilation_channels: int = 32  # D: width of the gated unit (the dilated conv outputs 2·D: filter and gate)
    skip_channels: int = 128  # S: width of the summed skip connections and of the output head
    quantization_channels: int = 256  # Q: mu-law classes, input and output
    global_condition_classes: int = 0  # 0 = unconditioned; else e.g. the number of genres
    global_condition_channels: int = 16  # width of the global-condition embedding
    local_condition_channels: int = 0  # >0: a per-timestep input added before every gate and before the output
    # 0: the output is Q logits (a softmax over the mu-law classes); > 0: a discretised mixture of this many logistics
    # over the same classes (output_head.py), 3 numbers each
    output_mixtures: int = 0

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(2**layer for layer in range(self.layers_per_stack)) * self.stacks

    @property
    def num_layers(self) -> int:
        return self.stacks * self.layers_per_stack

    @property
    def receptive_field(self) -> int:
        """Samples of input that one output sees: the embedding is a width-1 conv, each block adds (K-1)·d."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1

    def validate(self) -> WaveNetConfig:
        minimums = {
            "stacks": 1,
            "layers_per_stack": 1,
            "kernel_size": 2,
            "residual_channels": 1,
            "dilation_channels": 1,
            "skip_channels": 1,
            "quantization_channels": 2,
            "global_condition_classes": 0,
            "global_condition_channels": 1,
            "local_condition_channels": 0,
            "output_mixtures": 0,
        }
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"WaveNetConfig.{field.name} must be an integer, got {value!r}")
            if value < minimums[field.name]:
                raise ValueError(f"WaveNetConfig.{field.name} must be >= {minimums[field.name]}, got {value}")
        # 2**20 dilation already means a 2M-sample receptive field; beyond that the caches stop fitting in memory.
        if self.layers_per_stack > 20:
            raise ValueError(f"WaveNetConfig.layers_per_stack must be <= 20, got {self.layers_per_stack}")
        return self

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> WaveNetConfig:
        return configuration.from_dict(cls, data, source)


NAMED_CONFIGS: dict[str, WaveNetConfig] = {
    "small": WaveNetConfig(2, 10, 2, 32, 32, 128),
    "ibab": WaveNetConfig(5, 10, 2, 32, 32, 512),  # the ibab/tensorflow-wavenet defaults
}


def load_config(name_or_path: str, **overrides) -> WaveNetConfig:
    """A named configuration ("small", "ibab") or a .json/.yaml file of fields, then `overrides` (all validated)."""
    return configuration.load(WaveNetConfig, name_or_path, NAMED_CONFIGS, "model config", **overrides)


def flops_per_sample(config: WaveNetConfig, training: bool = True) -> int:
    """Matmul FLOPs (a multiply-add = 2) per time position of the full forward pass, times 3 when `training` (the
    backward pass computes two matmuls per forward one: the gradients of the inputs and of the weights).

    With loss on every window position (TrainConfig.loss_on_context, the default) every position is a predicted
    sample. Left out, as under 2% for the named configurations: element-wise work (gates, biases, ReLUs, softmax) and
    the per-sequence global-condition projection. docs/cluster.md sizes GPU runs with it.
    """
    K, R, D, S, Q, L = (config.kernel_size, config.residual_channels, config.dilation_channels, config.skip_channels,
                        config.quantization_channels, config.num_layers)  # fmt: skip
    multiply_adds = (
        L * K * R * 2 * D  # dilated convolutions: K taps of R -> 2D (filter and gate)
        + (L - 1) * D * R  # residual 1x1 (none after the last block)
        + L * D * S  # skip projection of all blocks' gated outputs
        + S * S  # output_hidden
        + S * output_head.width(config.output_mixtures, Q)  # output_logits (Q logits or 3M mixture parameters)
        + config.local_condition_channels * (2 * D * L + S)  # local conditioning, one projection for all
    )
    return 2 * multiply_adds * (3 if training else 1)


def block_name(index: int) -> str:
    return f"block_{index:02d}"


def layer_names(config: WaveNetConfig) -> list[str]:
    """Names of every weight-bearing layer of build_wavenet(config): the contract the fast generator reads."""
    names = ["input_embedding"]
    if config.global_condition_classes:
        names += ["global_embedding", "global_condition_projection"]
    if config.local_condition_channels:
        names.append("local_condition_projection")
    for index in range(config.num_layers):
        names.append(f"{block_name(index)}_dilated_conv")
        if index < config.num_layers - 1:
            names.append(f"{block_name(index)}_residual")
    names += ["skip_projection", "output_hidden", "output_logits"]
    return names


@keras.saving.register_keras_serializable(package="waveforms")
class CausalConv1D(keras.layers.Layer):
    """Dilated causal convolution as ONE matmul: the K shifted copies of the input are concatenated on channels.

    Kernel layout (K, C_in, C_out); tap k multiplies x[t - (K - 1 - k) · dilation], so the last tap sees the present.
    """

    def __init__(self, filters: int, kernel_size: int, dilation_rate: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, channels, self.filters), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, x):  # x: (B, T, C_in)
        span = (self.kernel_size - 1) * self.dilation_rate
        padded = ops.pad(x, [[0, 0], [span, 0], [0, 0]])  # (B, span + T, C_in)
        length = ops.shape(x)[1]
        taps = [padded[:, k * self.dilation_rate : k * self.dilation_rate + length] for k in range(self.kernel_size)]
        stacked = ops.concatenate(taps, axis=-1)  # (B, T, K·C_in)
        kernel = ops.reshape(self.kernel, (-1, self.filters))  # (K·C_in, C_out)
        return ops.matmul(stacked, kernel) + self.bias  # (B, T, C_out)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
        }


@keras.saving.register_keras_serializable(package="waveforms")
class AmplitudeEmbeddingInitializer(keras.initializers.Initializer):
    """Input embedding rows that start as one smooth random function of each code's amplitude.

    Code c of Q stands for the companded amplitude y = 2c/(Q-1) - 1. Row c starts as a random projection of
    [y, sin(pi k y), cos(pi k y) for k = 1..harmonics] (features standardised, channels about unit variance), so
    neighbouring codes start close: what the network learns about code c carries over to c ± 1 from the first step,
    where the default (independent small rows) leaves the rare loud codes untrained. Measured on the embedded
    dataset's notes, `small`, 600 steps (docs/quality.md, "The synth recipe"): 3.72-3.76 held-out bits/sample against
    4.12-4.25.
    """

    def __init__(self, harmonics: int = 4, seed=None):
        self.harmonics = harmonics
        self.seed = seed

    def __call__(self, shape, dtype=None):
        codes, channels = shape
        y = np.linspace(-1.0, 1.0, codes)
        waves = [wave(np.pi * k * y) for k in range(1, self.harmonics + 1) for wave in (np.sin, np.cos)]
        features = np.stack([y, *waves], axis=1)  # (Q, F)
        features = (features - features.mean(axis=0)) / features.std(axis=0)
        projection = keras.random.normal((features.shape[1], channels), stddev=features.shape[1] ** -0.5,
                                         dtype=dtype, seed=self.seed)  # fmt: skip
        return ops.matmul(ops.convert_to_tensor(features, dtype=dtype), projection)  # (Q, channels)

    def get_config(self):
        return {"harmonics": self.harmonics, "seed": self.seed}


def gated_activation(h, dilation_channels: int):
    """WaveNet's gated unit: tanh(filter) · sigmoid(gate); h carries [filter | gate] on its last axis."""
    return ops.tanh(h[..., :dilation_channels]) * ops.sigmoid(h[..., dilation_channels:])


def build_wavenet(config: WaveNetConfig) -> keras.Model:
    """The full forward pass: inputs "audio" (B, T) int32 [+ "global_condition" (B,), "local_condition" (B, T, C)]."""
    config.validate()
    R, D, S, Q = (
        config.residual_channels,
        config.dilation_channels,
        config.skip_channels,
        config.quantization_channels,
    )
    L = config.num_layers
    audio = keras.Input(shape=(None,), dtype="int32", name="audio")
    inputs = {"audio": audio}
    # An embedding is the one-hot codes through a width-1 (hence causal) convolution, without materialising the one-hot.
    embedding = keras.layers.Embedding(
        Q, R, embeddings_initializer=AmplitudeEmbeddingInitializer(), name="input_embedding"
    )
    x = embedding(audio)  # (B, T, R)

    global_bias = None
    if config.global_condition_classes:
        genre = keras.Input(shape=(), dtype="int32", name="global_condition")
        inputs["global_condition"] = genre
        embedded = keras.layers.Embedding(
            config.global_condition_classes, config.global_condition_channels, name="global_embedding"
        )(genre)  # (B, G)
        global_bias = keras.layers.Dense(2 * D * L, use_bias=False, name="global_condition_projection")(embedded)
        global_bias = ops.expand_dims(global_bias, 1)  # (B, 1, L·2D)

    local_bias = None
    if config.local_condition_channels:
        local = keras.Input(shape=(None, config.local_condition_channels), dtype="float32", name="local_condition")
        inputs["local_condition"] = local
        # All blocks' projections and the output's in one matmul: (B, T, L·2D + S).
        local_bias = keras.layers.Dense(2 * D * L + S, use_bias=False, name="local_condition_projection")(local)

    gated_outputs = []
    for index, dilation in enumerate(config.dilations):
        name = block_name(index)
        h = CausalConv1D(2 * D, config.kernel_size, dilation, name=f"{name}_dilated_conv")(x)  # (B, T, 2D)
        if global_bias is not None:
            h = h + global_bias[..., index * 2 * D : (index + 1) * 2 * D]
        if local_bias is not None:
            h = h + local_bias[..., index * 2 * D : (index + 1) * 2 * D]
        z = gated_activation(h, D)  # (B, T, D)
        gated_outputs.append(z)
        if index < L - 1:
            x = x + keras.layers.Dense(R, name=f"{name}_residual")(z)  # (B, T, R)

    stacked = ops.concatenate(gated_outputs, axis=-1) if L > 1 else gated_outputs[0]  # (B, T, L·D)
    skips = keras.layers.Dense(S, name="skip_projection")(stacked)  # (B, T, S)
    hidden = keras.layers.Dense(S, name="output_hidden")(ops.relu(skips))  # (B, T, S)
    if local_bias is not None:
        hidden = hidden + local_bias[..., 2 * D * L :]
    # (B, T, Q) logits, or (B, T, 3M) mixture parameters: output_head.py reads either
    outputs = keras.layers.Dense(output_head.width(config.output_mixtures, Q), name="output_logits")(ops.relu(hidden))
    return keras.Model(inputs=inputs, outputs=outputs, name="wavenet")
