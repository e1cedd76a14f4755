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
With `pitch_harmonics` > 0 (NSynth also conditioned its decoder on pitch; here the pitch is measured, not
labelled) a YIN pitch tracker adds log2(f0 / 440) and periodicity to every embedding frame, and the decoder hears
per sample sin/cos of the first harmonics of the fundamental's phase: measured in the window while training,
integrated from the (interpolated) pitch channel while decoding (`decoding_condition`). That gives the decoder a phase
reference it can follow instead of inventing one:

    codes ──PitchTrack (YIN, no weights)──▶ (B, F, 3): log2(f0/440), periodicity, phase at each frame's centre
    codes ──EnvelopeFrames (no weights)──▶ (B, F, V): mel-band levels, dB / 30 (envelope_bands = V)
    embedding = [log2(f0/440), periodicity, z, envelope] (B, F, 2 + E + V)
    condition = [embedding repeated H times, sin/cos(k·phase) · periodicity, k = 1..K] (B, T, 2 + E + V + 2K)

With `envelope_bands` > 0 the decoder also hears each frame's spectral envelope, measured as the pitch is (a vocoder's
band energies: LPCNet's network hears 18 of them), so each harmonic's level comes from the embedding instead of being
squeezed through z's 16 numbers.

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
    # > 0: NSynth's pitch conditioning, measured instead of labelled. A pitch tracker (YIN over the spectral_window
    # centred on each frame) adds two channels to every embedding frame, log2(f0 / 440 Hz) and periodicity, and the
    # decoder also hears, per sample, sin and cos of the first pitch_harmonics multiples of the fundamental's phase
    # (zero above Nyquist, scaled by periodicity). While training the phase is the one measured in the window, so
    # the features line up with the waveform; when decoding it is integrated from the (interpolated) pitch channel.
    # A decoder that only had its own past and a 16-number summary per 32 ms decoded every corner to the same noise
    # (docs/soundspace_quality.md); a phase reference makes a steady pitch cheap to hold and puts it under the
    # embedding's control. Measured at 600 s x 3 seeds (learning rate 1e-2): held-out bits 2.40-2.41 against
    # 2.46-2.50 without it, decoded corners 8.4-40x as flat as their sources against 16-140x for the previous default,
    # the dark-to-bright path in order for every seed. 0 = the plain NSynth design (the config "plain").
    pitch_harmonics: int = 8
    # > 0: the embedding also carries each frame's spectral envelope, this many mel-band levels (dB / 30), measured
    # like the pitch, not learned, so the decoder hears every band's level beside z (LPCNet conditions its network on
    # 18 band energies the same way). Measured at 600 s x 3 seeds (docs/soundspace_quality.md, "The envelope in the
    # embedding"). 0 = none (models saved before it existed).
    envelope_bands: int = 24

    @property
    def embedding_width(self) -> int:
        """Channels per embedding frame: the learned E, plus pitch and periodicity when the pitch is tracked, plus the
        envelope's bands."""
        return self.embedding_channels + (2 if self.pitch_harmonics else 0) + self.envelope_bands

    @property
    def decoder_config(self) -> WaveNetConfig:
        return dataclasses.replace(
            self.decoder, local_condition_channels=self.embedding_width + 2 * self.pitch_harmonics
        )

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
            "pitch_harmonics": 0,
            "envelope_bands": 0,
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

    @classmethod
    def from_stored(cls, data: dict, source: str = "model config") -> AutoencoderConfig:
        """A saved model's config: a field it predates takes the value it was trained with, not today's default (models
        saved before pitch tracking existed have none)."""
        return cls.from_dict({"pitch_harmonics": 0, "envelope_bands": 0, **data}, source=source)


# ---------------------------------------------------------------- the Keras graphs


def _build_encoder(config: AutoencoderConfig):
    encoder = _build_spectral_encoder(config) if config.encoder == "spectral" else _build_waveform_encoder(config)
    if not config.normalize_embedding and not config.pitch_harmonics and not config.envelope_bands:
        return encoder
    import keras
    from keras import ops

    codes = keras.Input(shape=(None,), dtype="int32", name="audio")
    embedding = encoder({"audio": codes})  # (B, F, E)
    if config.normalize_embedding:
        embedding = embedding * ops.rsqrt(ops.mean(embedding * embedding, axis=-1, keepdims=True) + 1e-6)  # unit RMS
    if config.pitch_harmonics:
        track = _pitch_track_layer(config)(codes)  # (B, F, 3)
        embedding = ops.concatenate([track[..., :2], embedding], axis=-1)  # (B, F, 2 + E): pitch, periodicity, z
    if config.envelope_bands:
        embedding = ops.concatenate([embedding, _envelope_frames_layer(config)(codes)], axis=-1)  # (..., + bands)
    return keras.Model(inputs={"audio": codes}, outputs=embedding, name="encoder")


def _codes_to_audio(codes, quantization_channels: int):
    """mu-law codes (B, T) -> float audio (B, T) in [-1, 1], inside a graph (audio.mu_law_decode's formula)."""
    from keras import ops

    mu = float(quantization_channels - 1)
    companded = ops.cast(codes, "float32") * (2.0 / mu) - 1.0
    return ops.sign(companded) * (ops.power(1.0 + mu, ops.abs(companded)) - 1.0) / mu


PITCH_REFERENCE_HZ = 440.0  # the pitch channel is log2(f0 / PITCH_REFERENCE_HZ): A4 = 0, one octave = 1


def pitch_hz(log_pitch):
    """The pitch channel -> f0 in Hz; numpy arrays or tensors (the one place the channel's scale is undone)."""
    from keras import ops

    return PITCH_REFERENCE_HZ * ops.power(2.0, log_pitch)


PERIODIC_THRESHOLD = 0.15  # YIN's threshold on the cumulative-mean-normalised difference (de Cheveigné & Kawahara)
MIN_LAG = 8  # samples: fundamentals up to 2 kHz at 16 kHz
SILENT_POWER = 1e-7  # mean square (-70 dBFS) at which a frame counts half periodic: silence has no pitch to hold


def _pitch_track_layer(config: AutoencoderConfig):
    """Codes (B, T) -> (B, ⌈T/H⌉, 3) per frame: log2(f0 / 440 Hz), periodicity in [0, 1], and the fundamental's phase
    (radians) at the frame's centre, sample f·H + H/2 (the signal there is close to cos(phase)). YIN over a window of
    spectral_window samples centred on each frame: lags MIN_LAG .. window/2, the first local minimum of the normalised
    difference under PERIODIC_THRESHOLD (else the deepest), refined by a parabola. Not trained: no weights."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class PitchTrack(keras.layers.Layer):
        def __init__(self, hop_length: int, window: int, sample_rate: int, quantization_channels: int, **kwargs):
            super().__init__(**kwargs)
            self.hop_length, self.window = hop_length, window
            self.sample_rate, self.quantization_channels = sample_rate, quantization_channels

        def call(self, codes):  # (B, T) int32
            import tensorflow as tf

            H, W, L = self.hop_length, self.window, self.window // 2
            audio = _codes_to_audio(codes, self.quantization_channels)  # (B, T)
            frames_count = (ops.shape(codes)[1] + H - 1) // H
            left = (W - H) // 2  # frame f's window starts at f·H - left: centred on f·H + H/2
            padded = ops.pad(audio, [[0, 0], [left, W + H]])
            x = tf.signal.frame(padded, W, H)[:, :frames_count]  # (B, F, W)
            # difference function d(tau) = sum_n (x_n - x_{n+tau})^2 over the W - tau overlapping samples
            spectrum = tf.signal.rfft(x, [2 * W])
            autocorrelation = tf.signal.irfft(spectrum * tf.math.conj(spectrum), [2 * W])[..., : L + 1]  # (B, F, L+1)
            energy = ops.pad(ops.cumsum(x * x, axis=-1), [[0, 0], [0, 0], [1, 0]])  # (B, F, W+1), energy[n] = sum_{<n}
            lags = np.arange(L + 1)
            head = ops.take(energy, W - lags, axis=-1)  # sum of x_n^2, n < W - tau
            tail = energy[..., W:] - ops.take(energy, lags, axis=-1)  # sum of x_n^2, n >= tau
            difference = ops.maximum(head + tail - 2.0 * autocorrelation, 0.0)  # (B, F, L+1)
            running = ops.cumsum(difference[..., 1:], axis=-1)
            normalised = ops.concatenate(
                [ops.ones_like(difference[..., :1]), difference[..., 1:] * lags[1:] / (running + 1e-12)], axis=-1
            )  # (B, F, L+1): YIN's cumulative-mean-normalised difference, 1 at lag 0
            in_range = (lags >= MIN_LAG) & (lags < L)
            previous = ops.pad(normalised[..., :-1], [[0, 0], [0, 0], [1, 0]], constant_values=2.0)
            following = ops.pad(normalised[..., 1:], [[0, 0], [0, 0], [0, 1]], constant_values=2.0)
            dips = (normalised < PERIODIC_THRESHOLD) & (normalised <= previous) & (normalised <= following) & in_range
            first_dip = ops.argmax(ops.cast(dips, "int32"), axis=-1)
            deepest = ops.argmin(ops.where(in_range, normalised, 2.0), axis=-1)
            lag = ops.where(ops.any(dips, axis=-1), first_dip, deepest)  # (B, F)
            around = ops.stack([lag - 1, lag, lag + 1], axis=-1)  # (B, F, 3)
            a, b, c = ops.unstack(ops.take_along_axis(normalised, around, axis=-1), 3, axis=-1)
            curvature = a - 2.0 * b + c
            shift = ops.where(curvature > 1e-9, 0.5 * (a - c) / ops.maximum(curvature, 1e-9), 0.0)
            period = ops.cast(lag, "float32") + ops.clip(shift, -0.5, 0.5)  # (B, F) samples
            f0 = self.sample_rate / period
            power = ops.mean(x * x, axis=-1)
            periodicity = ops.clip(1.0 - b, 0.0, 1.0) * power / (power + SILENT_POWER)

            def phase_at(f0, start: int, size: int):  # the Hann-windowed DFT at f0 of x[start:start + size], time
                offsets = np.arange(size, dtype=np.float32) + start - W // 2  # measured from the frame's centre
                hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)).astype(np.float32)
                angle = (2.0 * np.pi / self.sample_rate) * f0[..., None] * offsets  # (B, F, size)
                segment = x[..., start : start + size]
                return ops.arctan2(-ops.sum(hann * segment * ops.sin(angle), axis=-1),
                                   ops.sum(hann * segment * ops.cos(angle), axis=-1))  # fmt: skip

            # The lag's parabola leaves high notes up to 0.5% out (5 Hz at 1 kHz: half a radian across a frame); the
            # phase advance between the window's halves, W/2 samples apart, measures what is left
            drift = phase_at(f0, L, L) - phase_at(f0, 0, L)
            drift = ops.arctan2(ops.sin(drift), ops.cos(drift))  # wrapped: exact while the error is < sr / W
            f0 = f0 + drift * self.sample_rate / (2.0 * np.pi * L)
            phase = phase_at(f0, 0, W)  # the fundamental's phase at the centre
            return ops.stack([ops.log2(f0 / PITCH_REFERENCE_HZ), periodicity, phase], axis=-1)  # (B, F, 3)

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length, "window": self.window,
                    "sample_rate": self.sample_rate, "quantization_channels": self.quantization_channels}  # fmt: skip

    return PitchTrack(config.hop_length, config.spectral_window, config.sample_rate,
                      config.decoder.quantization_channels, name="pitch_track")  # fmt: skip


def harmonic_features(log_pitch, periodicity, phase, harmonics: int, sample_rate: int):
    """Per sample (B, T) each: log2(f0 / 440), periodicity, the fundamental's phase -> (B, T, 2·harmonics): sin and cos
    of k·phase for k = 1..harmonics, scaled by periodicity, 0 where k·f0 is at or above Nyquist. Works on numpy arrays
    (decoding) and on tensors (the training graph): one formula for both."""
    from keras import ops

    k = np.arange(1, harmonics + 1, dtype=np.float32)
    f0 = pitch_hz(log_pitch)[..., None]  # (B, T, 1)
    weight = ops.cast(f0 * k < 0.5 * sample_rate, "float32") * periodicity[..., None]  # (B, T, K)
    angle = phase[..., None] * k
    return ops.concatenate([ops.sin(angle) * weight, ops.cos(angle) * weight], axis=-1)


def _harmonic_condition_layer(config: AutoencoderConfig):
    """The training side: the tracked frames (B, F, 3) -> per-sample harmonic features (B, T, 2K) whose phase is the one
    measured in each frame, advanced at that frame's f0 from its centre."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="waveforms")
    class HarmonicCondition(keras.layers.Layer):
        def __init__(self, hop_length: int, harmonics: int, sample_rate: int, **kwargs):
            super().__init__(**kwargs)
            self.hop_length, self.harmonics, self.sample_rate = hop_length, harmonics, sample_rate

        def call(self, track, codes):  # (B, F, 3), (B, T)
            H = self.hop_length
            length = ops.shape(codes)[1]
            per_sample = ops.repeat(track, H, axis=1)[:, :length]  # (B, T, 3)
            log_pitch, periodicity, centre_phase = ops.unstack(per_sample, 3, axis=-1)
            since_centre = ops.cast(ops.arange(length) % H, "float32") - H // 2  # (T,)
            phase = centre_phase + (2.0 * np.pi / self.sample_rate) * pitch_hz(log_pitch) * since_centre
            return harmonic_features(log_pitch, periodicity, phase, self.harmonics, self.sample_rate)

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length, "harmonics": self.harmonics,
                    "sample_rate": self.sample_rate}  # fmt: skip

    return HarmonicCondition(config.hop_length, config.pitch_harmonics, config.sample_rate, name="harmonic_condition")


def decoding_condition(embedding: np.ndarray, config: AutoencoderConfig, length: int) -> np.ndarray:
    """The generation side: embeddings (B, F, W) -> the decoder's per-sample local condition (B, length, C). With pitch
    tracking, the harmonic features' phase is integrated from the embedding's pitch channel (starting at 0), since an
    interpolated point has no measured phase."""
    condition = upsample_embedding(embedding, config.hop_length, length)  # (B, length, W)
    if not config.pitch_harmonics:
        return condition
    log_pitch, periodicity = condition[..., 0], condition[..., 1]
    f0 = np.asarray(pitch_hz(log_pitch), np.float64)  # (B, length)
    phase = np.cumsum(2.0 * np.pi * f0 / config.sample_rate, axis=1)
    phase = np.mod(phase, 2.0 * np.pi).astype(np.float32)  # float32 keeps k·phase exact to well under a degree
    features = np.asarray(harmonic_features(log_pitch, periodicity, phase, config.pitch_harmonics, config.sample_rate))
    return np.concatenate([condition, features], axis=-1).astype(np.float32)


def pitch_filter(audio: np.ndarray, embedding: np.ndarray, config: AutoencoderConfig, strength: float) -> np.ndarray:
    """Decoded audio (B, T) and the embeddings it was decoded from (B, F, W) -> the audio with the noise between the
    harmonics of the embedding's pitch turned down: a recursive comb y[t] = (1 - g) x[t] + g y[t - P], P the pitch
    channel's period (fractional: linear interpolation), g = strength x periodicity at each sample.

    Why: the decoder samples every code from a distribution a few codes wide, which lays a broadband noise floor
    20-30 dB under a tone's harmonics. The embedding knows the pitch, so (like a speech codec's long-term postfilter,
    only stronger) a comb at that pitch passes the harmonics at unity gain and the noise between them at
    (1 - g) / (1 + g): -19 dB at g = 0.8. Aperiodic frames (periodicity near 0) pass unchanged; so does everything
    when strength is 0 or the model tracks no pitch. A note's onset builds up over about 1 / (1 - g) periods."""
    audio = np.asarray(audio, np.float32)
    if not strength or not config.pitch_harmonics:
        return audio
    batch, length = audio.shape
    if np.shape(embedding)[1] < config.frames(length):
        raise ValueError(f"{np.shape(embedding)[1]} embedding frames cover fewer than {length} samples")
    from waveforms.limits import rows_per_pass

    output = np.empty_like(audio)
    rows = rows_per_pass(length, 48)  # per sample: float64 period, gain, output and the condition's float32 copy
    for first in range(0, batch, rows):
        output[first : first + rows] = _comb(audio[first : first + rows], embedding[first : first + rows, :, :2],
                                             config, strength)  # fmt: skip
    return output


def _comb(audio: np.ndarray, pitch_frames: np.ndarray, config: AutoencoderConfig, strength: float) -> np.ndarray:
    """pitch_filter on a few rows: audio (b, T), frames (b, F, 2) of log pitch and periodicity."""
    length = audio.shape[1]
    condition = upsample_embedding(np.asarray(pitch_frames, np.float32), config.hop_length, length)  # (b, T, 2)
    period = np.maximum(config.sample_rate / np.asarray(pitch_hz(condition[..., 0]), np.float64), 2.0)  # (b, T)
    gain = strength * np.clip(condition[..., 1], 0.0, 1.0)  # (b, T)
    output = np.zeros(audio.shape, np.float64)
    # Blocks shorter than the shortest period: every output in a block reads only outputs from before it
    block = max(1, int(np.floor(period.min())) - 1)
    for start in range(0, length, block):
        t = np.arange(start, min(start + block, length))  # (m,)
        source = t - period[:, t]  # (b, m)
        whole = np.floor(source).astype(np.int64)
        fraction = source - whole
        before = np.take_along_axis(output, np.clip(whole, 0, length - 1), axis=1)
        after = np.take_along_axis(output, np.clip(whole + 1, 0, length - 1), axis=1)
        g = np.where(whole >= 0, gain[:, t], 0.0)  # no period back yet: the input passes
        output[:, t] = (1.0 - g) * audio[:, t] + g * ((1.0 - fraction) * before + fraction * after)
    return output.astype(np.float32)


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


def _frame_power(codes, hop_length: int, window: int, quantization_channels: int):
    """Codes (B, T) -> Hann-windowed power spectra (B, ⌈T/H⌉, window/2 + 1), frame f centred on samples [f·H, (f+1)·H),
    inside a graph (the spectral encoder's input and the envelope channels)."""
    from keras import ops

    H, W = hop_length, window
    audio = _codes_to_audio(codes, quantization_channels)  # (B, T) in [-1, 1]
    left = max((W - H) // 2, 0)  # centre the first window on the first frame's centre (H/2)
    padded = ops.pad(audio, [[0, 0], [left, W + H]])  # (B, left + T + W + H): room for a partial last frame
    real, imag = ops.stft(padded, W, H, W, window="hann", center=False)  # (B, ≥ ⌈T/H⌉, W/2 + 1)
    frames = (ops.shape(codes)[1] + H - 1) // H
    return (real * real + imag * imag)[:, :frames]


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
            power = _frame_power(codes, self.hop_length, self.window, self.quantization_channels)
            return ops.log(power + 1e-4) * 0.2  # about [-2, 2.5]: a window of full-scale sine peaks near e^12

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length, "window": self.window,
                    "quantization_channels": self.quantization_channels}  # fmt: skip

    return SpectralFrames(config.hop_length, config.spectral_window, config.decoder.quantization_channels,
                          name="encoder_spectrum")  # fmt: skip


ENVELOPE_SCALE_DB = 30.0  # the envelope channels are band levels in dB, clipped to +-60 and divided by this


def _envelope_frames_layer(config: AutoencoderConfig):
    """Codes (B, T) -> (B, ⌈T/H⌉, envelope_bands): each frame's mel-band levels in dB over the ENVELOPE_WINDOW centred
    on it (as envelope.spectral_envelope measures a float clip), clipped to +-60 dB and divided by ENVELOPE_SCALE_DB."""
    import keras
    from keras import ops

    from waveforms.envelope import ENVELOPE_WINDOW
    from waveforms.spectral import mel_filterbank

    @keras.saving.register_keras_serializable(package="waveforms")
    class EnvelopeFrames(keras.layers.Layer):
        def __init__(self, hop_length: int, window: int, sample_rate: int, bands: int, quantization_channels: int,
                     **kwargs):  # fmt: skip
            super().__init__(**kwargs)
            self.hop_length, self.window, self.sample_rate = hop_length, window, sample_rate
            self.bands, self.quantization_channels = bands, quantization_channels
            self.mel = mel_filterbank(sample_rate, window, bands).T  # (bins, bands)

        def call(self, codes):  # (B, T) int32
            power = _frame_power(codes, self.hop_length, self.window, self.quantization_channels)
            energy = ops.matmul(power, self.mel)  # (B, F, bands)
            level = 10.0 * ops.log(energy + 1e-6) / np.log(10.0)
            return ops.clip(level, -60.0, 60.0) / ENVELOPE_SCALE_DB

        def get_config(self):
            return {**super().get_config(), "hop_length": self.hop_length, "window": self.window,
                    "sample_rate": self.sample_rate, "bands": self.bands,
                    "quantization_channels": self.quantization_channels}  # fmt: skip

    return EnvelopeFrames(config.hop_length, ENVELOPE_WINDOW, config.sample_rate, config.envelope_bands,
                          config.decoder.quantization_channels, name="encoder_envelope")  # fmt: skip


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
    # keras.Model: "audio" (B, T) -> the decoder's teacher-forced local condition (B, T, C), as training builds it
    # (with pitch tracking its phase is the one measured in the clip; decoding integrates it instead)
    conditioner: object
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
            condition = decoding_condition(chunk, self.config, num_samples)  # (b, N, C)
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
    if config.pitch_harmonics:
        # (B, F, 3), for the phase. The encoder tracks the same frames for its pitch channels: 5 ms a 4 x 8,704 batch,
        # about 1.5% of a training step, kept rather than reshaping the saved models' layer layout
        track = _pitch_track_layer(config)(codes)
        condition = keras.ops.concatenate([condition, _harmonic_condition_layer(config)(track, codes)], axis=-1)
    conditioner = keras.Model(inputs={"audio": codes}, outputs=condition, name="conditioner")  # (B, T, C)
    noisy = _input_noise_layer(config.decoder_input_noise, config.decoder.quantization_channels)(codes)  # (B, T)
    split_codes, split_condition, join = _segment_layers(config.decoder_segment)
    logits = decoder({"audio": split_codes(noisy), "local_condition": split_condition(condition)})
    logits = join(logits, codes)  # (B, T, Q): logits[:, t] predicts the clean codes[:, t+1]
    model = keras.Model(inputs={"audio": codes}, outputs=logits, name="autoencoder")
    return Autoencoder(config, model, encoder, decoder, conditioner)


# ---------------------------------------------------------------- saving and loading


# ---------------------------------------------------------------- the training task (train.py's interface)


NAMED_CONFIGS: dict[str, AutoencoderConfig] = {
    "default": AutoencoderConfig(),
    "spectral": AutoencoderConfig(encoder="spectral"),
    "plain": AutoencoderConfig(pitch_harmonics=0, envelope_bands=0),  # NSynth's design: the decoder hears z alone
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
        return AutoencoderConfig.from_stored(data, source=source)

    @property
    def network(self):
        """The WaveNetConfig of the network that makes the predictions: the decoder."""
        return self.config.decoder_config

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
