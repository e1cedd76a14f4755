"""The sound-space quality measurements (waveforms/soundspace_quality.py) on stand-in autoencoders whose answers are
known: one that reproduces its input exactly and one that ignores it. No training."""

from __future__ import annotations

import numpy as np
import pytest

from waveforms.audio import mu_law_encode
from waveforms.autoencoder import AutoencoderConfig
from waveforms.soundspace_quality import CORNER_NOTES, corner_fidelity, path_centroids, spearman


class WaveformAutoencoder:
    """Its 'embedding' is the waveform itself, one hop per frame: decoding gives back the (interpolated) input."""

    def __init__(self):
        self.config = AutoencoderConfig(hop_length=64)

    def encode(self, audio):
        audio = np.asarray(audio, np.float32)
        return audio.reshape(len(audio), -1, self.config.hop_length)  # (N, F, H)

    def decode(self, embeddings, num_samples, *, temperature=1.0, seed=0):
        return mu_law_encode(embeddings.reshape(len(embeddings), -1)[:, :num_samples]).astype(np.int32)


class IgnoringAutoencoder(WaveformAutoencoder):
    """Decodes the same noisy hum whatever the embedding: what a decoder that ignores its embedding sounds like."""

    def decode(self, embeddings, num_samples, *, temperature=1.0, seed=0):
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
    assert fidelity.flatness_within == len(CORNER_NOTES)  # flatness as the 8-bit source's
    assert np.all(fidelity.coded_flatness[1:3] > 50 * fidelity.source_flatness[1:3])  # 8 bits raise the pure tones'
    path = path_centroids(WaveformAutoencoder())
    assert path.source_centroids[0] < path.source_centroids[1]  # dark, then bright
    assert path.rho == pytest.approx(1.0)  # mixing waveforms moves the centroid monotonically from dark to bright


def test_a_decoder_that_ignores_its_embedding_fails_them():
    fidelity = corner_fidelity(IgnoringAutoencoder())
    assert fidelity.nearest_own <= 1  # the same sound is nearest to one source at most
    assert fidelity.wrong_embedding_margin == pytest.approx(0.0, abs=1e-6)
    assert fidelity.flatness_within < len(CORNER_NOTES)
    assert abs(path_centroids(IgnoringAutoencoder()).rho) < 0.9


def test_embedding_bits_tell_a_decoder_that_reads_its_embedding_from_one_that_cannot():
    from helpers import TINY_AUTOENCODER

    from waveforms.autoencoder import build_autoencoder
    from waveforms.soundspace_quality import embedding_bits

    ae = build_autoencoder(TINY_AUTOENCODER)  # untrained, its embedding's path into the decoder amplified
    projection = ae.decoder.get_layer("local_condition_projection")
    projection.set_weights([20 * w for w in projection.get_weights()])
    own, wrong = embedding_bits(ae, seconds=0.25)
    assert own.shape == wrong.shape == (len(CORNER_NOTES),)
    assert np.all(own > 0) and np.abs(own - wrong).max() > 0.05
    projection.set_weights([np.zeros_like(w) for w in projection.get_weights()])  # the embedding cannot reach it
    own, wrong = embedding_bits(ae, seconds=0.25)
    np.testing.assert_allclose(own, wrong, atol=1e-9)
