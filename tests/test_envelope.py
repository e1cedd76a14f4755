"""The envelope filter (waveforms/envelope.py): it gives audio the band levels of a target envelope, over time and
frequency, and leaves audio that already has them alone."""

from __future__ import annotations

import numpy as np
import pytest

from waveforms.envelope import ENVELOPE_BANDS, MAX_CUT_DB, envelope_filter, spectral_envelope

SR, HOP = 16000, 512


def _tone(seconds: float, f0: float = 220.0, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, harmonics + 1)).astype(np.float32)


def _band_of(hz: float) -> int:
    envelope = spectral_envelope(np.sin(2 * np.pi * hz * np.arange(SR) / SR)[None].astype(np.float32), SR, HOP)
    return int(np.argmax(envelope[0, 10]))


def test_the_envelope_has_a_frame_per_hop_and_finds_a_tones_band():
    tone = np.sin(2 * np.pi * 1000 * np.arange(20000) / SR).astype(np.float32)
    envelope = spectral_envelope(np.stack([tone, np.zeros_like(tone)]), SR, HOP)
    assert envelope.shape == (2, 40, ENVELOPE_BANDS)  # ⌈20000 / 512⌉ frames
    assert envelope[0, 20].max() - np.median(envelope[0, 20]) > 40  # one band stands out
    assert _band_of(1000) == int(np.argmax(envelope[0, 20]))
    assert _band_of(200) < _band_of(1000) < _band_of(5000)  # bands rise with frequency
    assert np.all(envelope[1] == -100.0)  # silence: the floor


def test_the_filter_gives_noise_the_targets_band_levels_and_ends_notes_where_the_target_ends():
    rng = np.random.default_rng(0)
    note = _tone(1.0)
    note[8000:] = 0.0  # the target stops half way
    decoded = (0.05 * rng.standard_normal(SR) + 0.5 * _tone(1.0)).astype(np.float32)  # a noisy tone that never stops
    target = spectral_envelope(note[None], SR, HOP)
    filtered = envelope_filter(decoded[None], target, SR, HOP, 1.0)[0]
    after = spectral_envelope(filtered[None], SR, HOP)[0]
    sounding = slice(3, 12)  # frames well inside the note
    low = slice(0, _band_of(6 * 220.0) + 1)  # the bands the tone's harmonics are in
    assert np.abs(after[sounding, low] - target[0, sounding, low]).mean() < 3.0
    high = slice(_band_of(3000), None)  # only noise up there in the decoded audio, nothing in the target
    before = spectral_envelope(decoded[None], SR, HOP)[0]
    assert (before[sounding, high] - after[sounding, high]).mean() > 0.8 * MAX_CUT_DB
    rms_after_end = np.sqrt(np.mean(filtered[10000:15000] ** 2))  # the note has ended in the target
    assert 20 * np.log10(rms_after_end / np.sqrt(np.mean(decoded[10000:15000] ** 2))) < -0.8 * MAX_CUT_DB


def test_audio_that_already_has_the_envelope_passes_unchanged_and_strength_0_is_off():
    rng = np.random.default_rng(1)
    audio = np.stack([_tone(0.7) + 0.01 * rng.standard_normal(11200), 0.2 * rng.standard_normal(11200)])
    audio = audio.astype(np.float32)
    own = spectral_envelope(audio, SR, HOP)
    np.testing.assert_allclose(envelope_filter(audio, own, SR, HOP, 1.0), audio, atol=1e-4)
    other = spectral_envelope(audio[::-1].copy(), SR, HOP)
    np.testing.assert_array_equal(envelope_filter(audio, other, SR, HOP, 0.0), audio)
    half = envelope_filter(audio, other, SR, HOP, 0.5)
    full = envelope_filter(audio, other, SR, HOP, 1.0)
    distance = [np.abs(spectral_envelope(x, SR, HOP) - other)[:, 2:-2].mean() for x in (audio, half, full)]
    assert distance[0] > distance[1] > distance[2]  # strength moves the levels part of the way
    with pytest.raises(ValueError, match="21 envelope frames cover fewer than 11200 samples"):
        envelope_filter(audio, own[:, :21], SR, HOP, 1.0)
