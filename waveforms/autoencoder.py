"""NSynth-style autoencoder: a non-causal dilated-conv encoder, a time-pooled bottleneck, a WaveNet decoder.

    codes (B, T) ──companded float──▶ (B, T, 1)
      encoder_input (1×1) ──▶ for i < encoder_layers: x += encoder_i_mix(relu(encoder_i_dilated(relu(x))))
        (kernel 3, dilation 2**i, "same" padding: sees past AND future)                         (B, T, C)
      encoder_bottleneck (1×1) ──▶ (B, T, E) ──average pool, hop H──▶ embedding (B, ⌈T/H⌉, E)
      or (encoder "spectral"): log-power STFT, window W centred on each hop (B, ⌈T/H⌉, W/2+1) ──per-frame net──▶
        (B, ⌈T/H⌉, E)
      optionally (normalize_embedding) each frame scaled to unit RMS over its E channels
    embedding ──repeat H times──▶ (B, T, E) = local condition
    decoder = waveforms.model.build_wavenet(decoder config with local_condition_channels = E)
    logits (B, T, Q) = decoder(audio=codes, local_condition=...)    teacher-forced: logits[:, t] predicts codes[:, t+1]

The decoder is a plain `build_wavenet` model, so a sound space decodes with the same compiled `FastGenerator`, the
upsampled embedding passed as its `local_condition` (which enters every layer's gates and the output head). Its
receptive field (512 samples = 32 ms) covers a whole period of the lowest notes it is asked to make (the embedded
dataset's MIDI 36 = 65 Hz is 245 samples; its drums sound an octave lower), so it can hold a pitch by itself; the
earlier 5-layer decoder (32 samples) could not (a decoded string corner had flatness 0.067 against 0.0002 for its
source). A decoder that hears a whole period can also copy its own past and ignore the embedding; two things are there
to push it towards the embedding (neither was enough at the short budgets measured so far: docs/soundspace_quality.md):
  - decoding starts from the decoder's empty state (no past, as at the start of every training window) rather than
    from a receptive field of digital silence, which the training data never holds before a note (`decode`);
  - optionally (`decoder_input_noise`, training only), rounded Gaussian noise on the decoder's input codes, so the
    past is a rough guide to phase and the waveform's detail has to come from the embedding.
Whether the decoder uses the embedding is measured, not assumed: waveforms/soundspace_quality.py decodes held-out
corners with their own and with the other corners' embeddings and compares log-mel spectra
(benchmarks/soundspace_quality.py runs it over training seeds and budgets; docs/soundspace_quality.md has the figures).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from waveforms import config as configuration
from waveforms.model import WaveNetConfig

MODEL_KIND = "autoencoder"
ENCODERS = ("waveform", "spectral")


def _default_decoder() -> WaveNetConfig:
    # dilations 1..256: receptive field 512 samples (32 ms at 16 kHz), over one period of every note the embedded
    # dataset holds (MIDI 36 = 65 Hz: 245 samples; its drums sound an octave lower: 490)
    return WaveNetConfig(
        stacks=1, layers_per_stack=9, kernel_size=2, residual_channels=32, dilation_channels=32, skip_channels=64
    )


@dataclass(frozen=True)
class AutoencoderConfig:
    sample_rate: int = 16000
    hop_length: int = 512  # samples per embedding frame (NSynth: 512 = 32 ms at 16 kHz)
    embedding_channels: int = 16  # E: bottleneck width (NSynth: 16)
    encoder_layers: int = 8  # dilations 1 .. 2**(layers-1); kernel 3 → receptive field 2·(2**layers − 1) + 1
    encoder_channels: int = 32  # C: width of the encoder's residual stream
    encoder_kernel_size: int = 3
    # "waveform": dilated convolutions over the codes (NSynth), which must first learn to find pitch and timbre;
    # "spectral": log-power STFT frames (a window of spectral_window samples centred on each embedding frame) through
    # a small per-frame network, informative from the first step
    encoder: str = "waveform"
    spectral_window: int = 1024  # samples per STFT frame (64 ms at 16 kHz: harmonics of MIDI 36 resolved)
    # Each embedding frame scaled to unit RMS over its E channels (no learned gain): early in training a random
    # condition only adds noise to the decoder, and the cheapest fix the optimiser finds is to shrink the embedding
    # towards 0 (measured: mean |embedding| 0.07-0.15 after 400 steps), after which the decoder cannot use it
    normalize_embedding: bool = False
    decoder: WaveNetConfig = field(default_factory=_default_decoder)  # its local_condition_channels is set to E
    # Training only: Gaussian noise of this standard deviation (in mu-law codes) on the decoder's input codes, so it
    # cannot copy its own past exactly and has to read the timbre from the embedding (the encoder sees clean codes)
    decoder_input_noise: float = 0.0
    # Training only, > 0: the decoder hears each window in independent segments of this many samples (a multiple of
    # hop_length), each starting from its empty state as decoding does, so the start of every segment has to come from
    # the embedding; 0 = the whole window at once. Evaluation and decoding always hear the whole past.
    decoder_segment: int = 0

    @property
    def decoder_config(self) -> WaveNetConfig:
        return dataclasses.replace(self.decoder, local_condition_channels=self.embedding_channels)

    @property
    def encoder_receptive_field(self) -> int:
        return (self.encoder_kernel_size - 1) * (2**self.encoder_layers - 1) + 1

    def frames(self, samples: int) -> int:
        """Embedding frames for a clip of `samples` (the last frame may be partial)."""
        return -(-samples // self.hop_length)

    def validate(self) -> AutoencoderConfig:
        minimums = {
            "sample_rate": 1000,
            "hop_length": 1,
            "embedding_channels": 1,
            "encoder_layers": 1,
            "encoder_channels": 1,
            "encoder_kernel_size": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"AutoencoderConfig.{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"AutoencoderConfig.{name} must be >= {minimum}, got {value}")
        noise = self.decoder_input_noise
        if not isinstance(noise, int | float) or isinstance(noise, bool) or not 0 <= noise < 256:
            raise ValueError(f"AutoencoderConfig.decoder_input_noise must be a number in [0, 256), got {noise!r}")
        segment = self.decoder_segment
        if not isinstance(segment, int) or isinstance(segment, bool) or segment < 0 or segment % self.hop_length:
            raise ValueError(f"AutoencoderConfig.decoder_segment must be 0 or a multiple of hop_length "
                             f"({self.hop_length}), got {segment!r}")  # fmt: skip
        if self.encoder not in ENCODERS:
            raise ValueError(f"AutoencoderConfig.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        window = self.spectral_window
        if not isinstance(window, int) or isinstance(window, bool) or window < 2 or window & (window - 1):
            raise ValueError(f"AutoencoderConfig.spectral_window must be a power of 2 >= 2, got {window!r}")
        if self.encoder_kernel_size % 2 == 0:
            raise ValueError(
                f"AutoencoderConfig.encoder_kernel_size must be odd (centred), got {self.encoder_kernel_size}"
            )
        self.decoder_config.validate()
        return self

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["decoder"] = self.decoder.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> AutoencoderConfig:
        """Decoder fields nest under "decoder", laid over the default decoder."""
        return configuration.from_dict(cls, data, source)


# ---------------------------------------------------------------- the Keras graphs


def _build_encoder(config: AutoencoderConfig):
    encoder = _build_spectral_encoder(config) if config.encoder == "spectral" else _build_waveform_encoder(config)
    if not config.normalize_embedding:
        return encoder
    import keras
    from keras import ops

    codes = keras.Input(shape=(None,), dtype="int32", name="audio")
    z = encoder({"audio": codes})  # (B, F, E)
    embedding = z * ops.rsqrt(ops.mean(z * z, axis=-1, keepdims=True) + 1e-6)  # (B, F, E), unit RMS per frame
    return keras.Model(inputs={"audio": codes}, outputs=embedding, name="encoder")


def _build_waveform_encoder(config: AutoencoderConfig):
    import keras
    from keras import ops

    C, E = config.encoder_channels, config.embedding_channels
    codes = keras.Input(shape=(None,), dtype="int32", name="audio")
    Q = config.decoder.quantization_channels
    x = ops.expand_dims(ops.cast(codes, "float32") * (2.0 / (Q - 1)) - 1.0, -1)  # (B, T, 1), companded in [-1, 1]
    x = keras.layers.Dense(C, name="encoder_input")(x)  # (B, T, C)
    for i in range(config.encoder_layers):
        h = keras.layers.Conv1D(
            C, config.encoder_kernel_size, dilation_rate=2**i, padding="same", name=f"encoder_{i:02d}_dilated"
        )(ops.relu(x))  # (B, T, C), non-causal
        x = x + keras.layers.Dense(C, name=f"encoder_{i:02d}_mix")(ops.relu(h))  # (B, T, C)
    z = keras.layers.Dense(E, name="encoder_bottleneck")(x)  # (B, T, E)
    # "same" pooling keeps a partial last frame, so any length T gives ⌈T/H⌉ frames
    embedding = keras.layers.AveragePooling1D(config.hop_length, padding="same", name="encoder_pool")(z)
    return keras.Model(inputs={"audio": codes}, outputs=embedding, name="encoder")  # (B, ⌈T/H⌉, E)


def _spectral_frames_layer(config: AutoencoderConfig):
    """Codes (B, T) -> log-power STFT frames (B, ⌈T/H⌉, window/2 + 1), frame f centred on samples [f·H, (f+1)·H)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class SpectralFrames(keras.layers.Layer):
        def __init__(self, hop_length: int, window: int, quantization_channels: int, **kwargs):
            super().__init__(**kwargs)
            self.hop_length, self.window, self.quantization_channels = hop_length, window, quantization_channels

        def call(self, codes):  # (B, T) int32
            H, W, mu = self.hop_length, self.window, float(self.quantization_channels - 1)
            companded = ops.cast(codes, "float32") * (2.0 / mu) - 1.0
            audio = ops.sign(companded) * (ops.power(1.0 + mu, ops.abs(companded)) - 1.0) / mu  # (B, T) in [-1, 1]
            left = max((W - H) // 2, 0)  # centre the first window on the first frame's centre (H/2)
            padded = ops.pad(audio, [[0, 0], [left, W + H]])  # (B, left + T + W + H): room for a partial last frame
            real, imag = ops.stft(padded, W, H, W, window="hann", center=False)  # (B, ≥ ⌈T/H⌉, W/2 + 1)
            frames = (ops.shape(codes)[1] + H - 1) // H
            power = (real * real + imag * imag)[:, :frames]
            return ops.log(power + 1e-4) * 0.2  # about [-2, 2.5]: a window of full-scale sine peaks near e^12

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length, "window": self.window,
                    "quantization_channels": self.quantization_channels}  # fmt: skip

    return SpectralFrames(config.hop_length, config.spectral_window, config.decoder.quantization_channels,
                          name="encoder_spectrum")  # fmt: skip


def _build_spectral_encoder(config: AutoencoderConfig):
    """Log-power spectrum per embedding frame -> a per-frame network (one 3-frame convolution for onsets and
    vibrato) -> E channels. Pitch and timbre are in the input already, so the embedding carries them from step 0."""
    import keras
    from keras import ops

    C, E = config.encoder_channels, config.embedding_channels
    codes = keras.Input(shape=(None,), dtype="int32", name="audio")
    spectrum = _spectral_frames_layer(config)(codes)  # (B, F, W/2 + 1)
    x = keras.layers.Dense(C, name="encoder_input")(spectrum)  # (B, F, C)
    h = keras.layers.Conv1D(C, 3, padding="same", name="encoder_00_frames")(ops.relu(x))  # (B, F, C), non-causal
    x = x + keras.layers.Dense(C, name="encoder_00_mix")(ops.relu(h))  # (B, F, C)
    embedding = keras.layers.Dense(E, name="encoder_bottleneck")(ops.relu(x))  # (B, F, E)
    return keras.Model(inputs={"audio": codes}, outputs=embedding, name="encoder")


def upsample_embedding(embedding: np.ndarray, hop_length: int, length: int) -> np.ndarray:
    """(B, F, E) frames -> (B, length, E) per-sample condition by repetition (the generation side)."""
    return np.repeat(embedding, hop_length, axis=1)[:, :length]


def _upsample_layer(hop_length: int):
    """The training side of upsample_embedding, as a layer: the target length is only known when it runs."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class UpsampleEmbedding(keras.layers.Layer):
        def __init__(self, hop_length: int, **kwargs):
            super().__init__(**kwargs)
            self.hop_length = hop_length

        def call(self, embedding, codes):  # (B, F, E), (B, T)
            return ops.repeat(embedding, self.hop_length, axis=1)[:, : ops.shape(codes)[1]]  # (B, T, E)

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length}

    return UpsampleEmbedding(hop_length, name="upsample_embedding")


def _input_noise_layer(stddev: float, quantization_channels: int):
    """Codes plus rounded Gaussian noise, clipped to the code range, while training; the codes unchanged otherwise."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class NoisyCodes(keras.layers.Layer):
        def __init__(self, stddev: float, quantization_channels: int, **kwargs):
            super().__init__(**kwargs)
            self.stddev = stddev
            self.quantization_channels = quantization_channels
            self.seed = keras.random.SeedGenerator()  # seeded by keras.utils.set_random_seed (the run's seed)

        def call(self, codes, training=False):  # (B, T) int32
            if not training or self.stddev <= 0:
                return codes
            noise = keras.random.normal(ops.shape(codes), stddev=self.stddev, seed=self.seed)
            noisy = ops.round(ops.cast(codes, "float32") + noise)
            return ops.cast(ops.clip(noisy, 0, self.quantization_channels - 1), "int32")

        def get_config(self):
            return {**super().get_config(), "stddev": self.stddev, "quantization_channels": self.quantization_channels}

    return NoisyCodes(stddev, quantization_channels, name="decoder_input_noise")


def _segment_layers(segment: int):
    """(split, join): while training, (B, T, ...) -> (B·T/segment, segment, ...) and back; identity otherwise."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class SplitSegments(keras.layers.Layer):
        def __init__(self, segment: int, **kwargs):
            super().__init__(**kwargs)
            self.segment = segment

        def call(self, x, training=False):  # (B, T, ...) with T a multiple of segment
            if not training or not self.segment:
                return x
            shape = ops.shape(x)
            return ops.reshape(x, (-1, self.segment, *shape[2:]))  # (B·T/segment, segment, ...)

        def get_config(self):
            return {**super().get_config(), "segment": self.segment}

    @keras.saving.register_keras_serializable(package="waveforms")
    class JoinSegments(keras.layers.Layer):
        def __init__(self, segment: int, **kwargs):
            super().__init__(**kwargs)
            self.segment = segment

        def call(self, x, codes, training=False):  # (B·T/segment, segment, Q), the original (B, T) codes
            if not training or not self.segment:
                return x
            return ops.reshape(x, (ops.shape(codes)[0], ops.shape(codes)[1], ops.shape(x)[-1]))  # (B, T, Q)

        def get_config(self):
            return {**super().get_config(), "segment": self.segment}

    return (SplitSegments(segment, name="split_segments_codes"), SplitSegments(segment, name="split_segments_condition"),
            JoinSegments(segment, name="join_segments"))  # fmt: skip


@dataclass
class Autoencoder:
    """The trainable model plus its parts; `model` is what train.py fits ("audio" (B, T) -> logits (B, T, Q))."""

    config: AutoencoderConfig
    model: object  # keras.Model
    encoder: object  # keras.Model: "audio" (B, T) -> (B, ⌈T/H⌉, E)
    decoder: object  # keras.Model from build_wavenet: "audio", "local_condition" -> logits
    _generators: dict = field(default_factory=dict, repr=False)

    def encode(self, audio: np.ndarray) -> np.ndarray:
        """Float clips (N, T) in [-1, 1] -> embeddings (N, ⌈T/H⌉, E), float32."""
        from waveforms.audio import mu_law_encode

        codes = mu_law_encode(np.asarray(audio, np.float32)).astype(np.int32)  # (N, T)
        return np.asarray(self.encoder({"audio": codes}), np.float32)

    def decode(
        self,
        embeddings: np.ndarray,
        num_samples: int,
        *,
        temperature: float = 1.0,
        seed: int = 0,
        max_batch: int | None = None,
        progress=None,
    ) -> np.ndarray:
        """Embeddings (B, F, E) -> int32 codes (B, num_samples), all rows in one fast-generation pass (or passes of
        `max_batch` rows when given and smaller than B). progress(done, total) is called between compiled chunks.

        Decoding starts from the decoder's empty state (no past at all, one silence code as the present), which is what
        every training window's first positions see (the causal convolutions' zero padding): a training window never
        holds a receptive field of digital silence before a note, so starting from one would ask the decoder for a
        state it has not learned."""
        from waveforms.fastgen import SILENCE_CODE, FastGenerator

        embeddings = np.asarray(embeddings, np.float32)
        needed = self.config.frames(num_samples)
        if embeddings.shape[1] < needed:
            raise ValueError(
                f"{embeddings.shape[1]} embedding frames cover fewer than {num_samples} samples ({needed} frames)"
            )
        batch = len(embeddings) if not max_batch else min(max_batch, len(embeddings))
        outputs = []
        for start in range(0, len(embeddings), batch):
            chunk = embeddings[start : start + batch]
            if len(chunk) < batch:  # pad the last pass so one compiled generator serves every pass
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
            if batch not in self._generators:
                self._generators[batch] = FastGenerator(self.decoder, self.config.decoder_config, batch)
            condition = upsample_embedding(chunk, self.config.hop_length, num_samples)  # (b, N, E)
            codes = self._generators[batch].generate(
                num_samples,
                temperature=temperature,
                seed=seed + start,
                seed_codes=np.full((batch, 1), SILENCE_CODE, np.int32),
                local_condition=condition,
                progress=progress,
            )
            outputs.append(np.asarray(codes)[: len(embeddings) - start])
        return np.concatenate(outputs).astype(np.int32)


def build_autoencoder(config: AutoencoderConfig | None = None) -> Autoencoder:
    import keras

    from waveforms.model import build_wavenet

    config = (config or AutoencoderConfig()).validate()
    encoder = _build_encoder(config)
    decoder = build_wavenet(config.decoder_config)
    codes = keras.Input(shape=(None,), dtype="int32", name="audio")
    embedding = encoder({"audio": codes})  # (B, F, E)
    condition = _upsample_layer(config.hop_length)(embedding, codes)  # (B, T, E)
    noisy = _input_noise_layer(config.decoder_input_noise, config.decoder.quantization_channels)(codes)  # (B, T)
    split_codes, split_condition, join = _segment_layers(config.decoder_segment)
    logits = decoder({"audio": split_codes(noisy), "local_condition": split_condition(condition)})
    logits = join(logits, codes)  # (B, T, Q): logits[:, t] predicts the clean codes[:, t+1]
    model = keras.Model(inputs={"audio": codes}, outputs=logits, name="autoencoder")
    return Autoencoder(config, model, encoder, decoder)


# ---------------------------------------------------------------- saving and loading


# ---------------------------------------------------------------- the training task (train.py's interface)


NAMED_CONFIGS: dict[str, AutoencoderConfig] = {
    "default": AutoencoderConfig(),
    "spectral": AutoencoderConfig(encoder="spectral"),
}


class AutoencoderTask:
    """`waveforms train --model autoencoder`: the same teacher-forced next-sample loss as WaveNetTask; the encoder
    sees the whole window (it is non-causal by design; the 16-dim-per-512-samples bottleneck limits what leaks)."""

    kind = MODEL_KIND
    max_silence = None  # windows keep their silence: the notes' own silences are what the corners sound like

    def __init__(self, config: AutoencoderConfig):
        self.config = config.validate()

    @staticmethod
    def load_config(name_or_path: str, **overrides) -> AutoencoderConfig:
        """ "default" or a .json/.yaml file of AutoencoderConfig fields (decoder fields nested under "decoder")."""
        return configuration.load(AutoencoderConfig, name_or_path, NAMED_CONFIGS, "autoencoder config", **overrides)

    @staticmethod
    def config_from_dict(data: dict, source: str = "model config") -> AutoencoderConfig:
        return AutoencoderConfig.from_dict(data, source=source)

    @property
    def receptive_field(self) -> int:
        return self.config.decoder_config.receptive_field

    @property
    def conditioned(self) -> bool:
        return False

    def window_length(self, target_length: int) -> int:
        """Decoder context plus targets, rounded up to whole embedding frames (no partial frame in training) and to
        whole decoder segments when the decoder trains on segments."""
        length = self.receptive_field + target_length - 1
        unit = self.config.decoder_segment or self.config.hop_length
        return -(-length // unit) * unit

    def build_model(self):
        return build_autoencoder(self.config).model

    def model_inputs(self, codes, genre=None) -> dict:
        return {"audio": codes}
