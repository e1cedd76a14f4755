"""Count-model baselines against hand-computed entropies on tiny sequences, and the fit over a split."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from waveforms import baselines


def test_counts_are_bincounts_and_never_span_two_sequences():
    counts = baselines.NgramCounts.fit([np.array([0, 1, 1]), np.array([2, 0])], classes=3)
    np.testing.assert_array_equal(counts.unigram, [2, 2, 1])
    expected_bigram = np.zeros((3, 3), np.int64)
    expected_bigram[0, 1] = expected_bigram[1, 1] = expected_bigram[2, 0] = 1  # not (1, 2): that pair spans two
    np.testing.assert_array_equal(counts.bigram, expected_bigram)
    assert counts.trigram.sum() == 1 and counts.trigram[0, 1, 1] == 1
    # batched fitting is the same as adding one sequence at a time
    one_by_one = baselines.NgramCounts.empty(3)
    for sequence in ([0, 1, 1], [2, 0]):
        one_by_one.add(np.array(sequence))
    np.testing.assert_array_equal(one_by_one.trigram, counts.trigram)


def test_out_of_range_codes_are_refused():
    with pytest.raises(ValueError, match=r"codes must be in \[0, 4\)"):
        baselines.NgramCounts.fit([np.array([0, 4, 1])], classes=4)


def test_unigram_is_the_add_one_marginal_and_uniform_is_log2_q():
    train = np.array([0, 0, 0, 1])  # add-one over 4 classes: P = (4, 2, 1, 1) / 8
    counts = baselines.NgramCounts.fit([train], classes=4)
    windows = np.array([[3, 3, 0, 1, 2, 3]])  # scored targets: the last 3 -> codes 1, 2, 3
    bits = baselines.score(counts, windows, scored=3)
    assert bits["uniform"] == 2.0
    assert bits["unigram"] == pytest.approx(-(math.log2(2 / 8) + math.log2(1 / 8) + math.log2(1 / 8)) / 3)


def test_a_deterministic_cycle_costs_almost_nothing_for_bigram_and_trigram():
    cycle = np.tile(np.arange(8), 500)  # each code determines the next
    counts = baselines.NgramCounts.fit([cycle], classes=8)
    windows = np.stack([cycle[i : i + 40] for i in range(0, 400, 40)])
    bits = baselines.score(counts, windows, scored=30)
    assert bits["unigram"] == pytest.approx(3.0, abs=0.01)  # the marginal is uniform over 8 codes
    assert bits["bigram"] < 0.01 and bits["trigram"] < 0.01
    assert baselines.best(bits)[0] in ("bigram", "trigram")


def test_a_random_walk_scores_its_entropy_and_trigram_needs_context_two_back():
    rng = np.random.default_rng(0)
    steps = rng.integers(-1, 2, size=200_000)  # -1, 0, +1: log2(3) bits given the previous code
    walk = 100 + np.cumsum(steps) % 50
    counts = baselines.NgramCounts.fit([walk[:150_000]], classes=256)
    held_out = walk[150_000:]
    windows = np.stack([held_out[i : i + 1000] for i in range(0, 49_000, 1000)])
    bits = baselines.score(counts, windows, scored=900)
    assert bits["bigram"] == pytest.approx(math.log2(3), abs=0.02)
    assert bits["trigram"] == pytest.approx(math.log2(3), abs=0.03)  # two back adds nothing to a Markov chain
    assert bits["unigram"] > 5.0


def test_smoothed_models_are_normalised_for_every_history():
    counts = baselines.NgramCounts.fit([np.random.default_rng(1).integers(0, 5, size=60)], classes=5)
    models = baselines.models(counts)
    codes = np.arange(5)
    assert models["unigram"](codes).sum() == pytest.approx(1.0)
    for a, b in itertools.product(range(5), range(5)):
        assert models["bigram"](np.full(5, b), codes).sum() == pytest.approx(1.0)
        assert models["trigram"](np.full(5, a), np.full(5, b), codes).sum() == pytest.approx(1.0)
    unseen = baselines.NgramCounts.fit([np.array([0, 1, 2])], classes=5)
    assert baselines.models(unseen)["trigram"](np.full(5, 4), np.full(5, 4), codes).sum() == pytest.approx(1.0)


def test_windows_too_short_for_trigram_context_are_refused():
    counts = baselines.NgramCounts.fit([np.arange(10)], classes=16)
    with pytest.raises(ValueError, match="L >= scored"):
        baselines.score(counts, np.zeros((2, 6), np.int64), scored=4)
