"""waveforms.spectral: measurements on signals whose answers are known, and PNGs checked byte by byte."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from audio_fixtures import correlation_lag, sine

from waveforms import spectral

RATE = 16000


def test_stft_shapes_and_full_scale_sine_magnitude():
    bin_centred = 28 * RATE / 1024  # 437.5 Hz falls exactly on bin 28
    magnitude = spectral.stft_magnitude(sine(bin_centred, RATE, 1.0, amplitude=1.0))
    assert magnitude.shape == (1 + int(np.ceil((RATE - 1024) / 256)), 513)
    assert magnitude.dtype == np.float32
    assert np.argmax(magnitude[5]) == 28 and magnitude[5, 28] == pytest.approx(1.0, abs=0.01)
    assert spectral.stft_magnitude(np.zeros(10)).shape == (1, 513)  # shorter than one window: one padded frame

    db = spectral.log_spectrogram(sine(bin_centred, RATE, 1.0, amplitude=0.1), RATE, 1024, 256)
    assert db[5, 28] == pytest.approx(-20.0, abs=0.2)
    assert db.min() >= spectral.FLOOR_DB
    assert spectral.log_spectrogram(np.zeros(RATE), RATE).shape[1] == 1024 // 2 + 1  # default 64 ms window at 16 kHz


@pytest.mark.parametrize("frequency", [440.0, 61.7, 1234.5, 3999.0])
@pytest.mark.parametrize(("sample_rate", "seconds"), [(16000, 1.0), (8000, 0.5), (44100, 0.25)])
def test_dominant_frequency_is_accurate_between_bins(frequency, sample_rate, seconds):
    tone = sine(frequency, sample_rate, seconds) + 0.05 * sine(3 * frequency, sample_rate, seconds)
    assert spectral.dominant_frequency(tone, sample_rate) == pytest.approx(frequency, abs=1.0)


def test_centroid_and_flatness_separate_tones_from_noise():
    noise = np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1
    tone = sine(1000.0, RATE, 1.0)
    assert spectral.spectral_centroid(tone, RATE) == pytest.approx(1000.0, rel=0.02)
    assert spectral.spectral_centroid(noise, RATE) == pytest.approx(RATE / 4, rel=0.05)  # white: middle of the band
    assert spectral.spectral_flatness(tone) < 0.01
    assert 0.5 < spectral.spectral_flatness(noise) <= 1.0
    # Silent frames are ignored: a tone padded with silence measures the same.
    padded = np.concatenate([np.zeros(RATE, dtype=np.float32), tone, np.zeros(RATE, dtype=np.float32)])
    assert spectral.spectral_centroid(padded, RATE) == pytest.approx(spectral.spectral_centroid(tone, RATE), rel=0.05)
    assert spectral.spectral_centroid(np.zeros(RATE), RATE) == 0.0
    assert spectral.spectral_flatness(np.zeros(RATE)) == 0.0


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, position = {}, 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    assert position == len(data) and list(chunks)[-1] == b"IEND"
    return chunks


def test_spectrogram_png_is_a_valid_small_image_showing_the_tone():
    width, height = 200, 80
    tone = sine(440.0, RATE, 4.0) * np.exp(-np.arange(4 * RATE) / RATE).astype(np.float32)
    data = spectral.spectrogram_png(tone, RATE, width=width, height=height)

    chunks = _png_chunks(data)
    png_width, png_height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (png_width, png_height, depth, colour_type) == (width, height, 8, 3)
    assert len(chunks[b"PLTE"]) == 256 * 3
    assert len(data) < 8000  # a few KB: fit for data: URIs
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    pixels = rows[:, 1:]
    # The brightest row is where 440 Hz sits on the log-frequency axis (30 Hz at the bottom, Nyquist at the top).
    expected_row = height - 1 - np.log(440 / 30) / np.log((RATE / 2) / 30) * (height - 1)
    assert abs(int(np.argmax(pixels[:, 10])) - expected_row) <= 1.5
    # The tone decays: the left of the picture is brighter than the right on that row.
    brightest = int(np.argmax(pixels[:, 10]))
    assert pixels[brightest, 5] > pixels[brightest, width - 5]


def test_spectrogram_png_of_silence_and_tiny_inputs():
    for audio in (np.zeros(RATE, dtype=np.float32), np.ones(10, dtype=np.float32) * 0.1):
        chunks = _png_chunks(spectral.spectrogram_png(audio, RATE, width=32, height=16))
        assert struct.unpack(">II", chunks[b"IHDR"][:8]) == (32, 16)
    with pytest.raises(ValueError, match="width and height"):
        spectral.spectrogram_png(np.zeros(100), RATE, width=0)


def test_correlation_lag_helper_detects_a_delay():
    # The alignment tests rely on this helper: a 32-sample delay (tensorflow-io's resampler) must show up as 32.
    x = np.random.default_rng(1).standard_normal(4000)
    assert correlation_lag(np.concatenate([np.zeros(32), x])[:4000], x) == 32
    assert correlation_lag(x, x) == 0


def test_mel_filters_are_triangles_on_the_mel_scale():
    filters = spectral.mel_filterbank(RATE, 1024, bands=40)
    frequencies = np.fft.rfftfreq(1024, 1.0 / RATE)
    assert filters.shape == (40, 513) and filters.min() >= 0 and filters.max() <= 1
    peaks = frequencies[np.argmax(filters, axis=1)]
    assert np.all(np.diff(peaks) > 0)  # centres rise
    widths = (filters > 0).sum(axis=1)
    assert widths[-1] > 4 * widths[0]  # mel: high bands are much wider in Hz than low ones
    mel = 2595 * np.log10(1 + peaks / 700)
    steps = np.diff(mel[5:])  # the lowest few centres are quantised to a 15.6 Hz bin grid
    assert steps.std() < 0.15 * steps.mean()  # evenly spaced in mel


def test_log_mel_distance_ignores_level_and_tells_pitch_and_timbre_apart():
    tone = sine(440.0, RATE, 1.0, amplitude=0.5)
    assert spectral.log_mel_distance(tone, 0.1 * tone, RATE) == pytest.approx(0.0, abs=1e-3)  # level-independent
    octave = sine(880.0, RATE, 1.0, amplitude=0.5)
    t = np.arange(RATE) / RATE
    richer = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1320 * t)).astype(np.float32)
    assert spectral.log_mel_distance(tone, octave, RATE) > 10.0
    assert 1.0 < spectral.log_mel_distance(tone, richer, RATE) < spectral.log_mel_distance(tone, octave, RATE)
    spectrum = spectral.log_mel_spectrum(tone, RATE)
    assert spectrum.max() - spectrum.min() == pytest.approx(spectral.SILENCE_DB, abs=1e-3)  # floored 60 dB down
    assert spectral.log_mel_spectrum(np.zeros(RATE, np.float32), RATE).shape == (64,)
