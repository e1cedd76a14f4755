"""Do sound spaces sound like their corners? The measurements behind the sound-space bars (issue 12).

Given a trained autoencoder and corner sounds it has not been trained on:
  (a) fidelity: every decoded corner's log-mel spectrum is nearer to its own source than to any other corner's source
      (the distance matrix decoded × sources; its off-diagonal is what the wrong corner's embedding gives, so "the
      decoder uses the embedding" is the same measurement);
  (b) tone: each decoded corner's spectral flatness within a factor of its source's;
  (c) interpolation: the spectral centroid along a 2-corner path from a dark to a bright note is monotone
      (Spearman's rho over the path's points, each the mean of a few sampled replicas).
Corners are decoded exactly as `waveforms soundspace` decodes points: encode, interpolate, decode in one batch,
`audio.postprocess`. benchmarks/soundspace_quality.py runs this over training seeds; tests/test_autoencoder.py
asserts it at a reduced budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from waveforms.soundspace import ENVELOPE_FILTER, PITCH_FILTER, decode_points, encode_corners, grid_points, interpolate
from waveforms.synth import Note

# Held-out corners: four families at four pitches (seeds far above any note index of the embedded dataset, so these
# exact notes are never trained on). Chosen once, before any measurement; the lowest (MIDI 48) needs 122 samples a period.
CORNER_NOTES = (Note("string", 48, 100, 90001), Note("organ", 55, 100, 90002), Note("bell", 60, 75, 90003),
                Note("reed", 67, 100, 90004))  # fmt: skip
# The path's ends: a soft bell (few partials, centroid ~0.3 kHz) and a loud reed (odd partials up to 15, ~1.5 kHz)
DARK_NOTE, BRIGHT_NOTE = Note("bell", 55, 50, 90005), Note("reed", 62, 127, 90006)
FLATNESS_FACTOR = 2.0  # bar (b): decoded flatness within this factor of the source's
PATH_POINTS, PATH_REPLICAS = 9, 4


def spearman(a, b) -> float:
    """Spearman's rank correlation with average ranks for ties."""

    def ranks(values):
        values = np.asarray(values, np.float64)
        order = np.argsort(values, kind="stable")
        r = np.empty(len(values))
        r[order] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):  # ties share their mean rank
            tied = values == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra @ ra) * (rb @ rb))
    return float((ra @ rb) / denominator) if denominator > 0 else 0.0


def render_points(autoencoder, clips: np.ndarray, weights: np.ndarray, *, temperature: float = 1.0, seed: int = 0,
                  pitch_filter: float = PITCH_FILTER, envelope_filter: float = ENVELOPE_FILTER) -> np.ndarray:  # fmt: skip
    """Corner clips (K, T) and point weights (P, K) -> the points decoded, filtered and post-processed as sound spaces
    are, (P, T)."""
    from waveforms.audio import fit_length, postprocess

    config = autoencoder.config
    length = clips.shape[1]
    frames = config.frames(length)
    windows = np.stack([fit_length(clip, frames * config.hop_length) for clip in clips])
    conditions = interpolate(encode_corners(autoencoder, windows), np.asarray(weights, np.float32))  # (P, F, E + bands)
    decoded = decode_points(autoencoder, conditions, length, temperature=temperature, seed=seed,
                            pitch_filter=pitch_filter, envelope_filter=envelope_filter)  # fmt: skip
    return np.stack([postprocess(row, config.sample_rate, length) for row in decoded])


@dataclass(frozen=True)
class CornerFidelity:
    distances: np.ndarray  # (K, K) dB: decoded corner i against source j (log_mel_distance)
    source_flatness: np.ndarray  # (K,) the float sources
    coded_flatness: (
        np.ndarray
    )  # (K,) the sources after the 8-bit mu-law round trip: the best a 256-class decoder can do
    decoded_flatness: np.ndarray  # (K,)

    @property
    def nearest_own(self) -> int:
        """Bar (a): how many decoded corners are nearer to their own source than to any other."""
        return int(np.sum(np.argmin(self.distances, axis=1) == np.arange(len(self.distances))))

    @property
    def flatness_ratios(self) -> np.ndarray:
        """Decoded over source flatness, the source as the model sees it (8-bit mu-law: quantisation alone raises a
        pure tone's flatness from ~1e-6 to ~2e-4, so no 8-bit decoder can come within 2x of the float source)."""
        return self.decoded_flatness / np.maximum(self.coded_flatness, 1e-12)

    @property
    def flatness_within(self) -> int:
        """Bar (b): how many decoded corners' flatness is within FLATNESS_FACTOR of their source's, the source taken
        as the float clip or its 8-bit mu-law coding, or anything between: decoded audio is 8-bit and near the coded
        source's flatness, until the envelope filter takes the quantisation floor out again (a decoder that gives
        back its input exactly then lands on the float source's: tests/test_soundspace_quality.py)."""
        low = np.minimum(self.source_flatness, self.coded_flatness) / FLATNESS_FACTOR
        high = np.maximum(self.source_flatness, self.coded_flatness) * FLATNESS_FACTOR
        return int(np.sum((self.decoded_flatness >= low) & (self.decoded_flatness <= high)))

    @property
    def wrong_embedding_margin(self) -> float:
        """Mean over sources of (distance to the decodings of the other corners' embeddings) minus (distance to its own
        decoding), dB: how much the embedding matters; near 0 when the decoder ignores it."""
        own = np.diag(self.distances)
        others = (self.distances.sum(axis=0) - own) / (len(own) - 1)  # per source j: decodings of other embeddings
        return float(np.mean(others - own))


def corner_fidelity(autoencoder, notes=CORNER_NOTES, *, seconds: float = 1.0, temperature: float = 1.0,
                    seed: int = 0, pitch_filter: float = PITCH_FILTER,
                    envelope_filter: float = ENVELOPE_FILTER) -> CornerFidelity:  # fmt: skip
    from waveforms.synth import render_note

    sources = np.stack([render_note(note, autoencoder.config.sample_rate, seconds) for note in notes])  # (K, T)
    return clip_fidelity(autoencoder, sources, temperature=temperature, seed=seed, pitch_filter=pitch_filter,
                         envelope_filter=envelope_filter)  # fmt: skip


def clip_fidelity(autoencoder, sources: np.ndarray, *, temperature: float = 1.0, seed: int = 0,
                  pitch_filter: float = PITCH_FILTER, envelope_filter: float = ENVELOPE_FILTER) -> CornerFidelity:  # fmt: skip
    """Bars (a) and (b) for any corner sounds (K, T) at the model's sample rate, e.g. recorded instruments."""
    from waveforms.audio import mu_law_decode, mu_law_encode
    from waveforms.spectral import log_mel_distance, spectral_flatness

    sr = autoencoder.config.sample_rate
    decoded = render_points(autoencoder, sources, np.eye(len(sources)), temperature=temperature, seed=seed,
                            pitch_filter=pitch_filter, envelope_filter=envelope_filter)  # fmt: skip
    distances = np.array([[log_mel_distance(d, s, sr) for s in sources] for d in decoded])
    flatness = [spectral_flatness(s) for s in sources]
    coded = [spectral_flatness(mu_law_decode(mu_law_encode(s))) for s in sources]
    return CornerFidelity(
        distances, np.array(flatness), np.array(coded), np.array([spectral_flatness(d) for d in decoded])
    )


ONSET_LEVEL = 0.1  # a recording's note starts at its first sample above this fraction of its peak


def recorded_corners(paths, sample_rate: int, seconds: float = 1.0) -> np.ndarray:
    """(K, T) corner sounds from audio files: `seconds` from each recording's onset (leading silence skipped), peak
    normalised; a recording shorter than that after its onset is an error naming it."""
    from waveforms.audio import decode, peak_normalize

    length = int(round(seconds * sample_rate))
    clips = []
    for path in paths:
        x = decode(path, sample_rate)
        loud = np.flatnonzero(np.abs(x) >= ONSET_LEVEL * max(float(np.abs(x).max()), 1e-12))
        onset = int(loud[0]) if len(loud) else 0
        if len(x) - onset < length:
            raise ValueError(f"{path}: {(len(x) - onset) / sample_rate:.2f} s after its onset, need {seconds:g} s")
        clips.append(peak_normalize(x[onset : onset + length]))
    return np.stack(clips).astype(np.float32)


def embedding_bits(autoencoder, notes=CORNER_NOTES, *, seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced bits per sample of each held-out corner (K,) with its own condition, and the mean over the other
    corners' conditions (K,): whether the decoder reads its condition at all, without sampling noise. The condition is
    the one training builds (`Autoencoder.conditioner`: the embedding and, with pitch tracking, the harmonics at the
    phase measured in that corner). Only positions with a full receptive field of the corner's own past are scored."""
    from waveforms.audio import mu_law_encode
    from waveforms.synth import render_note

    config = autoencoder.config
    length = config.frames(int(seconds * config.sample_rate)) * config.hop_length
    codes = np.stack([mu_law_encode(render_note(note, config.sample_rate, length / config.sample_rate))
                      for note in notes]).astype(np.int32)[:, :length]  # fmt: skip
    conditions = np.asarray(autoencoder.conditioner({"audio": codes}), np.float32)  # (K, T, C), as in training
    skip = config.decoder_config.receptive_field

    def bits(condition):  # (K, T, C) -> (K,)
        from waveforms import output_head

        decoder = config.decoder_config
        outputs = autoencoder.decoder({"audio": codes, "local_condition": condition})
        # outputs[:, t] predicts codes[:, t + 1]
        nll = output_head.nll(outputs[:, skip - 1 : -1], codes[:, skip:], decoder.output_mixtures,
                              decoder.quantization_channels)  # fmt: skip
        return np.asarray(nll, np.float64).mean(axis=1) / np.log(2)

    own = bits(conditions)
    wrong = np.mean([bits(np.roll(conditions, shift, axis=0)) for shift in range(1, len(notes))], axis=0)
    return own, wrong


@dataclass(frozen=True)
class PathCentroids:
    source_centroids: tuple[float, float]  # Hz: the dark and the bright source
    centroids: np.ndarray  # (PATH_POINTS,) Hz: mean over replicas, from the dark end to the bright end

    @property
    def rho(self) -> float:
        return spearman(np.arange(len(self.centroids)), self.centroids)


def path_centroids(autoencoder, dark: Note = DARK_NOTE, bright: Note = BRIGHT_NOTE, *, seconds: float = 1.0,
                   temperature: float = 1.0, seed: int = 0, pitch_filter: float = PITCH_FILTER,
                   envelope_filter: float = ENVELOPE_FILTER) -> PathCentroids:  # fmt: skip
    """Bar (c): the centroid at PATH_POINTS points from dark (x=0) to bright (x=1), PATH_REPLICAS samplings each, all
    decoded in one batch."""
    from waveforms.spectral import spectral_centroid
    from waveforms.synth import render_note

    sr = autoencoder.config.sample_rate
    sources = np.stack([render_note(dark, sr, seconds), render_note(bright, sr, seconds)])
    weights = np.repeat(np.array([p.weights for p in grid_points(2, PATH_POINTS)]), PATH_REPLICAS, axis=0)
    clips = render_points(autoencoder, sources, weights, temperature=temperature, seed=seed, pitch_filter=pitch_filter,
                          envelope_filter=envelope_filter)  # fmt: skip
    centroids = np.array([spectral_centroid(clip, sr) for clip in clips]).reshape(PATH_POINTS, PATH_REPLICAS)
    return PathCentroids((spectral_centroid(sources[0], sr), spectral_centroid(sources[1], sr)), centroids.mean(axis=1))


def measure(autoencoder, *, temperature: float = 1.0, seed: int = 0, pitch_filter: float = PITCH_FILTER,
            envelope_filter: float = ENVELOPE_FILTER) -> dict:  # fmt: skip
    """All three bars for one trained autoencoder, as plain numbers (for a table or JSON)."""
    filters = dict(pitch_filter=pitch_filter, envelope_filter=envelope_filter)
    fidelity = corner_fidelity(autoencoder, temperature=temperature, seed=seed, **filters)
    path = path_centroids(autoencoder, temperature=temperature, seed=seed, **filters)
    own_bits, wrong_bits = embedding_bits(autoencoder)
    return {
        "own_embedding_bits": round(float(own_bits.mean()), 3),
        "wrong_embedding_bits": round(float(wrong_bits.mean()), 3),
        "nearest_own": fidelity.nearest_own,
        "corners": len(fidelity.distances),
        "distances_db": np.round(fidelity.distances, 2).tolist(),
        "wrong_embedding_margin_db": round(fidelity.wrong_embedding_margin, 2),
        "source_flatness": [float(f"{v:.3g}") for v in fidelity.source_flatness],
        "coded_source_flatness": [float(f"{v:.3g}") for v in fidelity.coded_flatness],
        "decoded_flatness": [float(f"{v:.3g}") for v in fidelity.decoded_flatness],
        "flatness_within": fidelity.flatness_within,
        "path_source_centroids_hz": [round(c) for c in path.source_centroids],
        "path_centroids_hz": [round(float(c)) for c in path.centroids],
        "path_rho": round(path.rho, 3),
    }
