"""Test audio: signals made with NumPy, encoded to real files by the ffmpeg command line (independent of waveforms.audio)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

# extension -> encoder arguments (ffmpeg's defaults for the container otherwise)
ENCODERS = {
    ".wav": ["-c:a", "pcm_s16le"],
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "6"],
}


def sine(frequency: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)  # (samples,)


def noise_bursts(sample_rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Broadband test signal: short white-noise bursts at irregular times (a sharp, unambiguous correlation peak)."""
    rng = np.random.default_rng(seed)
    n = int(round(sample_rate * seconds))
    x = np.zeros(n, dtype=np.float32)
    burst = int(0.01 * sample_rate)
    for start in rng.choice(np.arange(burst, n - 2 * burst), size=6, replace=False):
        x[start : start + burst] = 0.4 * rng.standard_normal(burst)
    return x


def encode(path: Path, audio: np.ndarray, sample_rate: int, codec: list[str] | None = None) -> Path:
    """Write audio, shape (samples,) or (samples, channels), to path with ffmpeg; codec overrides ENCODERS."""
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels),
               "-i", "-", *(codec or ENCODERS[path.suffix]), str(path)]  # fmt: skip
    subprocess.run(command, input=audio.tobytes(), check=True)
    return path


def ideal_resample(x: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling by zero-padding/truncating the spectrum: the reference with no delay at all."""
    n_out = len(x) * target_rate // source_rate
    assert n_out * source_rate == len(x) * target_rate, "choose a length that maps to a whole number of samples"
    spectrum = np.fft.rfft(x.astype(np.float64))
    bins = n_out // 2 + 1
    kept = np.zeros(bins, dtype=complex)
    kept[: min(bins, len(spectrum))] = spectrum[: min(bins, len(spectrum))]
    return np.fft.irfft(kept, n_out) * (n_out / len(x))


def correlation_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int = 200) -> int:
    """Lag in samples (|lag| <= max_lag) at which signal best matches reference; positive means signal is late."""
    n = min(len(signal), len(reference)) - max_lag
    scores = [
        np.dot(signal[max_lag + lag : max_lag + lag + n - max_lag], reference[max_lag:n])
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag
