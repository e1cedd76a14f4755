"""The sound-space quality measurements (waveforms/soundspace_quality.py) on stand-in autoencoders whose answers are
known: one that reproduces its input exactly and one that ignores it. No training."""

from __future__ import annotations

import numpy as np
import pytest

from waveforms.audio import mu_law_encode
from waveforms.autoencoder import AutoencoderConfig
from waveforms.soundspace_quality import CORNER_NOTES, corner_fidelity, path_centroids, spearman


class WaveformAutoencoder:
    """Its 'embedding' is the waveform itself, one hop per frame: decoding gives back the (interpolated) input. It
    has no pitch channels, so the pitch filter leaves it alone."""

    def __init__(self):
        self.config = AutoencoderConfig(hop_length=64, embedding_channels=64, pitch_harmonics=0, envelope_bands=0)

    def encode(self, audio):
        audio = np.asarray(audio, np.float32)
        return audio.reshape(len(audio), -1, self.config.hop_length)  # (N, F, H)

    def decode(self, embeddings, num_samples, *, temperature=1.0, seed=0, max_batch=None, progress=None):
        return mu_law_encode(embeddings.reshape(len(embeddings), -1)[:, :num_samples]).astype(np.int32)


class IgnoringAutoencoder(WaveformAutoencoder):
    """Decodes the same noisy hum whatever the embedding: what a decoder that ignores its embedding sounds like."""

    def decode(self, embeddings, num_samples, *, temperature=1.0, seed=0, max_batch=None, progress=None):
        t = np.arange(num_samples) / self.config.sample_rate
        rng = np.random.default_rng(seed)
        hum = 0.3 * np.sin(2 * np.pi * 150 * t) + 0.05 * rng.standard_normal(num_samples)
        return np.repeat(mu_law_encode(hum.astype(np.float32))[None], len(embeddings), axis=0).astype(np.int32)


def test_spearman_matches_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)  # 1 - 6*4/(5*24)
    assert spearman([1, 2, 3, 4], [1, 1, 2, 2]) == pytest.approx(0.894427, abs=1e-6)  # ties: ranks 0.5 0.5 2.5 2.5
    assert spearman([1, 2, 3], [5, 5, 5]) == 0.0  # no variation: no correlation


def test_a_faithful_decoder_passes_every_corner_bar():
    fidelity = corner_fidelity(WaveformAutoencoder())
    assert fidelity.distances.shape == (len(CORNER_NOTES),) * 2
    assert fidelity.nearest_own == len(CORNER_NOTES)
    # only the mu-law round trip (its noise floor under the pure organ and bell tones) and the post-processing differ
    assert np.all(np.diag(fidelity.distances) < 10.0)
    assert np.all(fidelity.distances[~np.eye(len(CORNER_NOTES), dtype=bool)] > 15.0)
    assert fidelity.wrong_embedding_margin > 15.0  # the other corners' embeddings decode to other sounds
    assert fidelity.flatness_within == len(CORNER_NOTES)
    assert np.all(fidelity.coded_flatness[1:3] > 50 * fidelity.source_flatness[1:3])  # 8 bits raise the pure tones'
    # the envelope filter takes the quantisation floor out again: the float source's flatness, not the 8-bit one's
    ratios = fidelity.decoded_flatness / fidelity.source_flatness
    assert np.all((ratios > 0.5) & (ratios < 3.0)), ratios
    alone = corner_fidelity(WaveformAutoencoder(), envelope_filter=0.0)
    np.testing.assert_allclose(alone.flatness_ratios, 1.0, rtol=0.1)  # without it, the 8-bit source's
    assert alone.flatness_within == len(CORNER_NOTES)
    path = path_centroids(WaveformAutoencoder())
    assert path.source_centroids[0] < path.source_centroids[1]  # dark, then bright
    assert path.rho == pytest.approx(1.0)  # mixing waveforms moves the centroid monotonically from dark to bright


def test_a_decoder_that_ignores_its_embedding_fails_them():
    fidelity = corner_fidelity(IgnoringAutoencoder(), envelope_filter=0.0)  # the decoder alone
    assert fidelity.nearest_own <= 1  # the same sound is nearest to one source at most
    assert fidelity.wrong_embedding_margin == pytest.approx(0.0, abs=1e-6)
    assert fidelity.flatness_within < len(CORNER_NOTES)
    assert abs(path_centroids(IgnoringAutoencoder(), envelope_filter=0.0).rho) < 0.9


def test_the_envelope_filter_moves_even_an_ignoring_decoders_hum_towards_each_corner():
    """What the envelope filter contributes, measured where the decoder contributes nothing: so the bars are also
    reported with the filters off (benchmarks/soundspace_quality.py, docs/soundspace_quality.md)."""
    alone = corner_fidelity(IgnoringAutoencoder(), envelope_filter=0.0)
    filtered = corner_fidelity(IgnoringAutoencoder())
    assert filtered.nearest_own > alone.nearest_own  # a hum passes bar (a) for more corners: the envelope's work
    assert np.sum(np.diag(filtered.distances) < np.diag(alone.distances) - 3.0) >= 2
    assert filtered.wrong_embedding_margin > 3.0  # the envelope channels differ between corners, the hum does not


class DistinctEmbeddings:
    """A real (untrained) decoder behind a conditioner that gives every corner its own unit embedding, so whether the
    embedding reaches the decoder is the only thing that can change the bits (an untrained encoder's embeddings of
    different notes may be nearly alike)."""

    def __init__(self, autoencoder):
        self.config, self.decoder = autoencoder.config, autoencoder.decoder

    def conditioner(self, inputs):  # the decoder's per-sample condition, as training builds it
        corners, length = inputs["audio"].shape
        unit = np.eye(corners, self.config.embedding_channels, dtype=np.float32)  # (K, E)
        return np.repeat(unit[:, None], length, axis=1)  # (K, T, E)


def test_embedding_bits_tell_a_decoder_that_reads_its_embedding_from_one_that_cannot():
    from helpers import TINY_AUTOENCODER

    from waveforms.autoencoder import build_autoencoder
    from waveforms.soundspace_quality import embedding_bits

    ae = build_autoencoder(TINY_AUTOENCODER)  # untrained, its embedding's path into the decoder amplified
    assert TINY_AUTOENCODER.embedding_channels >= len(CORNER_NOTES)  # one unit embedding per corner
    projection = ae.decoder.get_layer("local_condition_projection")
    projection.set_weights([20 * w for w in projection.get_weights()])
    own, wrong = embedding_bits(DistinctEmbeddings(ae), seconds=0.25)
    assert own.shape == wrong.shape == (len(CORNER_NOTES),)
    assert np.all(own > 0) and np.abs(own - wrong).max() > 0.05
    projection.set_weights([np.zeros_like(w) for w in projection.get_weights()])  # the embedding cannot reach it
    own, wrong = embedding_bits(DistinctEmbeddings(ae), seconds=0.25)
    np.testing.assert_allclose(own, wrong, atol=1e-9)


def test_recorded_corners_start_at_each_onset_and_the_bars_read_them(tmp_path):
    from waveforms.audio import write_wav
    from waveforms.soundspace_quality import clip_fidelity, recorded_corners
    from waveforms.synth import render_note

    sr = 16000
    paths = []
    for index, note in enumerate(CORNER_NOTES):  # recordings with 0.1-0.4 s of near-silence before the note
        lead = 0.001 * np.random.default_rng(index).standard_normal(int(0.1 * (index + 1) * sr)).astype(np.float32)
        paths.append(str(tmp_path / f"{note.family}.wav"))
        write_wav(paths[-1], np.concatenate([lead, 0.5 * render_note(note, sr, 1.5)]), sr)
    corners = recorded_corners(paths, sr, seconds=1.0)
    assert corners.shape == (len(paths), sr)
    for clip, note in zip(corners, CORNER_NOTES, strict=True):
        onset = np.flatnonzero(np.abs(render_note(note, sr, 1.5)) >= 0.1 * np.abs(render_note(note, sr, 1.5)).max())[0]
        assert np.abs(clip[: max(onset - 16, 1)]).max() < 0.2  # the lead-in is skipped: the clip opens on the note
        assert np.abs(clip).max() == pytest.approx(10 ** (-1 / 20), rel=1e-3)  # peak normalised
    assert clip_fidelity(WaveformAutoencoder(), corners).nearest_own == len(paths)
    assert clip_fidelity(IgnoringAutoencoder(), corners, envelope_filter=0.0).nearest_own <= 1  # the decoder alone
    with pytest.raises(ValueError, match=r"string\.wav: 1\.\d\d s after its onset, need 2 s"):
        recorded_corners(paths[:1], sr, seconds=2.0)
