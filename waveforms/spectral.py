"""Spectral measurements and spectrogram images (for reports, the sound-space explorer and tests).

Pure NumPy; PNGs are written directly with zlib (a palette image of a few KB, no matplotlib import).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

SILENCE_DB = 60.0  # frames quieter than the loudest frame by more than this are silence
FLOOR_DB = -100.0  # log spectrogram floor (dBFS)


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got shape {x.shape}")
    if n_fft <= 0 or hop <= 0:
        raise ValueError(f"n_fft and hop must be positive, got n_fft={n_fft}, hop={hop}")
    count = 1 + max(0, math.ceil((len(x) - n_fft) / hop))
    padded = np.zeros((count - 1) * hop + n_fft, dtype=np.float32)
    padded[: len(x)] = x
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]  # (frames, n_fft)


def stft_magnitude(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """Hann-windowed STFT magnitude, (frames, n_fft // 2 + 1); a full-scale sine peaks near 1.0."""
    window = np.hanning(n_fft).astype(np.float32)
    spectrum = np.fft.rfft(_frames(x, n_fft, hop) * window, axis=1)  # (frames, bins)
    return (np.abs(spectrum) * (2.0 / window.sum())).astype(np.float32)


def log_spectrogram(x: np.ndarray, sample_rate: int, n_fft: int | None = None, hop: int | None = None) -> np.ndarray:
    """dBFS spectrogram, (frames, bins), floored at FLOOR_DB; by default 64 ms windows every 16 ms at sample_rate."""
    n_fft = n_fft or 1 << max(6, round(math.log2(0.064 * sample_rate)))
    hop = hop or max(1, n_fft // 4)
    magnitude = stft_magnitude(x, n_fft, hop)
    return np.maximum(20.0 * np.log10(np.maximum(magnitude, 1e-12)), FLOOR_DB).astype(np.float32)


def _sounding(energy: np.ndarray) -> np.ndarray:
    """Which frames are within SILENCE_DB of the loudest (none when the whole signal is silent)."""
    loudest = energy.max(initial=0.0)
    if loudest <= 1e-20:
        return np.zeros(energy.shape, bool)
    return energy >= loudest * 10.0 ** (-SILENCE_DB / 10.0)


def _power_frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Power spectra of the non-silent frames, (frames, bins); empty when the whole signal is silent."""
    power = stft_magnitude(x, n_fft, hop) ** 2  # (frames, bins)
    return power[_sounding(power.sum(axis=1))]


def spectral_centroid(x: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256) -> float:
    """Mean over non-silent frames of the power-weighted mean frequency, in Hz (0.0 for silence)."""
    power = _power_frames(x, n_fft, hop)
    if len(power) == 0:
        return 0.0
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    per_frame = (power @ frequencies) / power.sum(axis=1)  # (frames,)
    return float(per_frame.mean())


def spectral_flatness(x: np.ndarray, n_fft: int = 1024, hop: int = 256) -> float:
    """Geometric over arithmetic mean of the power spectrum, averaged over non-silent frames: ~0 tonal, ~1 noise."""
    power = _power_frames(x, n_fft, hop) + 1e-12
    if len(power) == 0:
        return 0.0
    per_frame = np.exp(np.mean(np.log(power), axis=1)) / power.mean(axis=1)  # (frames,)
    return float(np.clip(per_frame.mean(), 0.0, 1.0))


MAX_PITCH_HZ = 2000.0  # the shortest period periodicity() looks for


def periodicity(x: np.ndarray, sample_rate: int, n_fft: int = 1024, hop: int = 256) -> float:
    """How periodic the sound is, median over non-silent frames: ~1 for a held pitch or chord, ~0.4-0.45 for white
    or brown noise. Per frame, 1 minus the lowest point of YIN's cumulative-mean-normalised difference (de Cheveigné
    & Kawahara 2002) over periods of sample_rate / MAX_PITCH_HZ .. n_fft / 2 samples.

    Spectral flatness misses what this catches: over a whole frame, flatness is ruled by the spectrum's tilt, so
    low-passed noise measures as tonal as music. (The autoencoder tracks pitch with the same difference function
    in-graph, on batches of codes, with the first dip and the phase; this one measures float audio for the checks.)"""
    frames = np.asarray(_frames(x, n_fft, hop), dtype=np.float64)
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames[_sounding(np.sum(frames * frames, axis=1))]
    if len(frames) == 0:
        return 0.0
    half = n_fft // 2
    spectrum = np.fft.rfft(frames, 2 * n_fft, axis=1)
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n_fft, axis=1)[:, : half + 1]
    cumulative = np.pad(np.cumsum(frames * frames, axis=1), ((0, 0), (1, 0)))  # cumulative[:, n] = sum of x_k^2, k < n
    lags = np.arange(half + 1)
    # d(tau) = sum over the n_fft - tau overlapping samples of (x_n - x_{n+tau})^2
    difference = (
        cumulative[:, n_fft - lags] + cumulative[:, n_fft : n_fft + 1] - cumulative[:, lags] - 2.0 * autocorrelation
    )
    difference = np.maximum(difference[:, 1:], 0.0)  # lags 1..half
    normalised = difference * lags[1:] / (np.cumsum(difference, axis=1) + 1e-20)
    shortest = max(2, int(round(sample_rate / MAX_PITCH_HZ)))
    per_frame = 1.0 - normalised[:, shortest - 1 : half - 1].min(axis=1)
    return float(np.clip(np.median(per_frame), 0.0, 1.0))


def dominant_frequency(x: np.ndarray, sample_rate: int) -> float:
    """Frequency of the strongest spectral peak, in Hz, refined between bins by a parabola through log magnitudes."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 4:
        raise ValueError(f"dominant_frequency needs mono audio of at least 4 samples, got shape {x.shape}")
    size = 1 << math.ceil(math.log2(len(x)))  # zero-pad to a power of two (>= 1 bin per sample-rate / len)
    magnitude = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), n=size))
    peak = int(np.argmax(magnitude[1:-1])) + 1
    left, centre, right = np.log(magnitude[peak - 1 : peak + 2] + 1e-30)
    denominator = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / denominator if denominator < 0 else 0.0
    return float((peak + offset) * sample_rate / size)


# Palette: dark blue -> purple -> orange -> pale yellow (perceptually ordered, like "magma"), 256 entries.
_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                     [250, 193, 39], [252, 255, 164]], dtype=np.float64)  # fmt: skip
_PALETTE = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)], axis=1
).astype(np.uint8)  # (256, 3)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(indices: np.ndarray, palette: np.ndarray = _PALETTE) -> bytes:
    """Encode a (height, width) uint8 index image with a (256, 3) palette as an 8-bit palette PNG."""
    height, width = indices.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    rows[:, 1:] = indices
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit, palette colour, deflate, no interlace
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", header),
        _png_chunk(b"PLTE", palette.astype(np.uint8).tobytes()),
        _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
        _png_chunk(b"IEND", b""),
    ])  # fmt: skip


def spectrogram_png(
    x: np.ndarray, sample_rate: int, width: int = 256, height: int = 96, range_db: float = 80.0
) -> bytes:
    """A small PNG of the spectrogram: time left to right, log frequency (30 Hz to Nyquist) bottom to top."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    x = np.asarray(x, dtype=np.float32)
    n_fft = 1 << max(6, round(math.log2(0.032 * sample_rate)))
    hop = max(1, (len(x) - n_fft) // max(1, width - 1)) if len(x) > n_fft else n_fft
    db = log_spectrogram(x, sample_rate, n_fft, hop)  # (frames, bins)
    # Resample to the image grid: nearest frame per column, log-spaced frequencies per row (interpolated).
    columns = db[np.linspace(0, len(db) - 1, width).round().astype(int)]  # (width, bins)
    bin_of_row = np.geomspace(30.0, sample_rate / 2, height) * n_fft / sample_rate
    grid = np.stack([np.interp(bin_of_row, np.arange(db.shape[1]), column) for column in columns], axis=1)
    grid = grid[::-1]  # (height, width), high frequencies at the top
    top = max(float(db.max()), FLOOR_DB + range_db)
    scaled = np.clip((grid - (top - range_db)) / range_db, 0.0, 1.0)
    return png_bytes(np.round(scaled * 255).astype(np.uint8))


def mel_filterbank(sample_rate: int, n_fft: int, bands: int = 64, low_hz: float = 30.0) -> np.ndarray:
    """Triangular filters evenly spaced on the mel scale (HTK formula) from low_hz to Nyquist, (bands, n_fft//2 + 1)."""

    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(low_hz), to_mel(sample_rate / 2), bands + 2))  # (bands + 2,) Hz
    frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)  # (bins,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (bands, 1) each
    rising = (frequencies - lower) / (centre - lower)
    falling = (upper - frequencies) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)  # (bands, bins)


def log_mel_spectrum(x: np.ndarray, sample_rate: int, bands: int = 64, n_fft: int = 1024, hop: int = 256) -> np.ndarray:
    """The clip's average mel power spectrum over its sounding frames, in dB relative to its own mean power and floored
    SILENCE_DB below its strongest band, (bands,): a level-independent fingerprint of timbre and pitch (a clip and a
    louder copy are at distance 0; bands far below the rest, where an 8-bit decoder's noise floor lives, count as one)."""
    power = _power_frames(x, n_fft, hop)  # (frames, bins)
    if len(power) == 0:
        return np.full(bands, FLOOR_DB, np.float32)
    mel = mel_filterbank(sample_rate, n_fft, bands) @ power.mean(axis=0)  # (bands,)
    db = 10.0 * np.log10(np.maximum(mel / max(float(mel.mean()), 1e-30), 1e-12))
    return np.maximum(db, db.max() - SILENCE_DB).astype(np.float32)


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square difference in dB over the last axis of log-mel spectra (log_mel_spectrum), broadcast."""
    return np.sqrt(np.mean(np.square(np.asarray(a) - np.asarray(b)), axis=-1))


def log_mel_distance(a: np.ndarray, b: np.ndarray, sample_rate: int) -> float:
    """Root-mean-square difference in dB between two clips' log-mel spectra (log_mel_spectrum)."""
    return float(spectrum_distance(log_mel_spectrum(a, sample_rate), log_mel_spectrum(b, sample_rate)))


def spectral_change(x: np.ndarray, sample_rate: int, parts: int = 4) -> float:
    """How much the sound changes within x: the mean log-mel distance (dB) between consecutive parts (a quarter-second
    each for a 1-s window). Level-independent, so a fading note changes little and a new note or chord much. Measured
    on 1-s windows: a held tone or a steady drone 0-1.8 dB; the demo's synth phrases 4.6-23 dB (5th-95th percentile);
    two game soundtracks 2.4-10 dB."""
    size = len(x) // parts
    if parts < 2 or size == 0:
        return 0.0
    spectra = np.stack([log_mel_spectrum(x[i * size : (i + 1) * size], sample_rate) for i in range(parts)])
    # log_mel_distance between neighbours, each part's spectrum computed once
    return float(np.mean(spectrum_distance(spectra[1:], spectra[:-1])))
