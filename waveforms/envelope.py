"""A sound's spectral envelope, and a filter that gives decoded audio the envelope of the sound it was encoded from.

Why: the autoencoder's decoder gets pitch and phase right long before it gets timbre right. After a 600-s training
run its decoded corners were 15-19 dB (log-mel) from their sources, with a noise floor where the sources are silent,
upper harmonics missing and noise bursts between notes (docs/soundspace_quality.md). Vocoders split the work the same
way: LPCNet's network makes the excitation and a filter computed from 18 band energies gives it its spectral shape.
Here a sound space carries, beside each corner's embedding, the corner's envelope: ENVELOPE_BANDS mel-band energies
per embedding frame. Points interpolate it like the embedding (linearly, in dB), and after decoding each point's
audio is equalised, frame by frame and band by band, towards its interpolated envelope. The decoder still makes the
fine structure (which harmonics, their phase, the texture inside each band); the envelope sets how loud each band is
and when a note starts and ends. The decoder hears the same band levels too, measured from the codes inside its
graph (`AutoencoderConfig.envelope_bands`); this module measures a float clip, which has no 8-bit noise floor.

    corner audio ──spectral_envelope──▶ (N, F, bands) dB, frame f centred on sample f·H + H/2 (as the pitch track)
    decoded (B, T), envelope (B, F, bands) ──envelope_filter──▶ (B, T):
        gain[f, b] = strength · clip(envelope − envelope of the decoded audio, −MAX_CUT_DB, +MAX_BOOST_DB)
        STFT (Hann 512 / hop 128) · gain interpolated over time and spread over each band's bins ──overlap-add──▶ audio
"""

from __future__ import annotations

import numpy as np

from waveforms.spectral import FLOOR_DB  # a band of digital silence: the spectrograms' floor

# 24 bands: about the ear's count of critical bands, the resolution at which it hears a spectral envelope. Coarser
# than the 64 bands soundspace_quality compares spectra in, so the fine structure inside each band (which harmonics,
# how much noise between them) is still the decoder's.
ENVELOPE_BANDS = 24
MAX_CUT_DB = 60.0  # the decoder's noise where the source is silent goes down by up to this
MAX_BOOST_DB = 20.0  # a band the decoder left (nearly) empty is not raised further: that would only raise its noise
ENVELOPE_WINDOW = 1024  # samples a band level is measured over (64 ms at 16 kHz), centred on each embedding frame
FILTER_WINDOW, FILTER_HOP = 512, 128  # the equaliser's STFT: 32 ms Hann windows, 4x overlap (exact overlap-add)
BYTES_PER_SAMPLE = 160  # the equaliser's temporaries per sample of a clip (4x-overlapped frames, complex spectra)


def _centred_frames(audio: np.ndarray, window: int, hop: int, offset: int, count: int) -> np.ndarray:
    """(B, T) -> (B, count, window): frame f centred on sample f·hop + offset (zeros outside the clip)."""
    batch, length = audio.shape
    padded = np.zeros((batch, window + max(length, count * hop) + window), np.float32)
    padded[:, window : window + length] = audio
    starts = window + np.arange(count) * hop + offset - window // 2  # (count,)
    return padded[:, starts[:, None] + np.arange(window)[None, :]]


def spectral_envelope(audio: np.ndarray, sample_rate: int, hop_length: int, bands: int = ENVELOPE_BANDS) -> np.ndarray:
    """Float clips (N, T) -> band levels in dB, (N, ⌈T/hop_length⌉, bands): a Hann window of ENVELOPE_WINDOW samples
    centred on each embedding frame (f·H + H/2), its power summed into mel bands from 30 Hz to Nyquist."""
    from waveforms.spectral import mel_filterbank

    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2:
        raise ValueError(f"spectral_envelope expects clips of shape (N, samples), got shape {audio.shape}")
    count = -(-audio.shape[1] // hop_length)
    window = np.hanning(ENVELOPE_WINDOW).astype(np.float32)
    frames = _centred_frames(audio, ENVELOPE_WINDOW, hop_length, hop_length // 2, count) * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (N, F, ENVELOPE_WINDOW/2 + 1)
    energy = power @ mel_filterbank(sample_rate, ENVELOPE_WINDOW, bands).T  # (N, F, bands)
    return np.maximum(10.0 * np.log10(np.maximum(energy, 1e-30)), FLOOR_DB).astype(np.float32)


def _bin_weights(sample_rate: int, bands: int) -> np.ndarray:
    """(bands, bins) of the equaliser's STFT: each bin's gain is the mean of its bands' gains weighted by their
    triangles, so the gain moves smoothly across a band's bins; bins below the first band take the first band's."""
    from waveforms.spectral import mel_filterbank

    weights = mel_filterbank(sample_rate, FILTER_WINDOW, bands).astype(np.float64)  # (bands, bins)
    uncovered = weights.sum(axis=0) <= 0
    below = uncovered & (np.arange(weights.shape[1]) < np.argmax(weights[0] > 0))
    weights[0, below] = 1.0
    weights[-1, uncovered & ~below] = 1.0  # Nyquist
    return (weights / weights.sum(axis=0, keepdims=True)).astype(np.float32)


def envelope_filter(audio: np.ndarray, envelope: np.ndarray, sample_rate: int, hop_length: int,
                    strength: float) -> np.ndarray:  # fmt: skip
    """Decoded audio (B, T) and target envelopes (B, F, bands) (spectral_envelope of what it should sound like, or an
    interpolation of several) -> the audio equalised towards them: per frame and band, its level moves `strength`
    of the way (in dB) to the target's, at most MAX_CUT_DB down and MAX_BOOST_DB up. Strength 0 returns the audio."""
    audio = np.asarray(audio, np.float32)
    if not strength:
        return audio
    batch, length = audio.shape
    frames, bands = np.shape(envelope)[1:]
    if frames < -(-length // hop_length):
        raise ValueError(f"{frames} envelope frames cover fewer than {length} samples")
    from waveforms.limits import rows_per_pass

    output = np.empty_like(audio)
    step = rows_per_pass(length, BYTES_PER_SAMPLE)
    for first in range(0, batch, step):
        rows = slice(first, first + step)
        own = spectral_envelope(audio[rows], sample_rate, hop_length, bands)
        gain_db = strength * np.clip(np.asarray(envelope[rows], np.float32) - own, -MAX_CUT_DB, MAX_BOOST_DB)
        output[rows] = _equalise(audio[rows], gain_db, sample_rate, hop_length)
    return output


def _equalise(audio: np.ndarray, gain_db: np.ndarray, sample_rate: int, hop_length: int) -> np.ndarray:
    """Audio (b, T), band gains (b, F, bands) in dB at the envelope frames' centres -> the audio through a
    time-varying equaliser: Hann-windowed STFT, gains interpolated linearly between frame centres, weighted
    overlap-add (Hann analysis and synthesis, normalised by the summed squared window)."""
    batch, length = audio.shape
    count = -(-length // FILTER_HOP) + 1  # STFT frames centred on 0, hop, ..., covering the last sample
    window = np.hanning(FILTER_WINDOW + 1)[:-1].astype(np.float32)  # periodic Hann: its squares overlap-add flat
    spectra = np.fft.rfft(_centred_frames(audio, FILTER_WINDOW, FILTER_HOP, 0, count) * window, axis=-1)
    # each STFT frame's gain, between the envelope frames around it (their centres are f·H + H/2)
    position = np.clip((np.arange(count) * FILTER_HOP - hop_length / 2) / hop_length, 0, gain_db.shape[1] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, gain_db.shape[1] - 1)
    fraction = (position - below)[None, :, None].astype(np.float32)
    gains = gain_db[:, below] * (1 - fraction) + gain_db[:, above] * fraction  # (b, count, bands)
    per_bin = 10.0 ** ((gains @ _bin_weights(sample_rate, gain_db.shape[2])) / 20.0)  # (b, count, bins)
    pieces = np.fft.irfft(spectra * per_bin, FILTER_WINDOW, axis=-1).astype(np.float32) * window  # (b, count, W)
    half, overlap = FILTER_WINDOW // 2, FILTER_WINDOW // FILTER_HOP
    total = np.zeros((batch, (count + overlap) * FILTER_HOP + FILTER_WINDOW), np.float32)
    norm = np.zeros(total.shape[1], np.float32)
    for phase in range(overlap):  # frames phase, phase + overlap, ... tile without overlapping: add them at once
        tiled = pieces[:, phase::overlap].reshape(batch, -1)
        start = phase * FILTER_HOP
        total[:, start : start + tiled.shape[1]] += tiled
        norm[start : start + tiled.shape[1]] += np.tile(window**2, tiled.shape[1] // FILTER_WINDOW)
    return (total[:, half : half + length] / np.maximum(norm[half : half + length], 1e-3)).astype(np.float32)
