"""Count-model baselines: what a model must beat before it can be said to have learned anything.

Every quality number (`val_bits`) stands beside these, scored on exactly the same held-out positions:

    uniform  log2(Q) bits: a guess that ignores the data
    unigram  the mu-law marginal distribution (add-one smoothed): ignores context
    bigram   P(c | b), interpolated absolute discounting down to the unigram
    trigram  P(c | a, b), interpolated Kneser-Ney (continuation counts for the lower orders)

Counts are fitted on the training split with NumPy bincounts over dense arrays (Q**3 int64 = 128 MiB for Q = 256), so an
hour of audio (58 M samples) fits in a few seconds and there is no per-sample Python loop. Discounts are Ney's
D = n1 / (n1 + 2 n2) (n_k: how many n-grams occur exactly k times), estimated from the counts themselves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

ORDERS = ("uniform", "unigram", "bigram", "trigram")


@dataclass
class NgramCounts:
    """Unigram, bigram and trigram counts of code sequences; sequences are separate (no n-gram spans two)."""

    classes: int
    unigram: np.ndarray  # (Q,) int64
    bigram: np.ndarray  # (Q, Q) int64: [previous, next]
    trigram: np.ndarray  # (Q, Q, Q) int64: [two back, previous, next]

    @classmethod
    def empty(cls, classes: int = 256) -> NgramCounts:
        return cls(classes, np.zeros(classes, np.int64), np.zeros((classes,) * 2, np.int64),
                   np.zeros((classes,) * 3, np.int64))  # fmt: skip

    def add(self, codes: np.ndarray) -> None:
        """Count one sequence of codes in [0, Q)."""
        self._add_batch([codes])

    @classmethod
    def fit(cls, sequences: Iterable[np.ndarray], classes: int = 256) -> NgramCounts:
        """Counts of many sequences, concatenated into large batches: one bincount per batch, not per sequence."""
        counts, pending, size = cls.empty(classes), [], 0
        for codes in sequences:
            codes = np.asarray(codes).ravel()
            pending.append(codes)
            size += codes.size
            if size >= FIT_BATCH_SAMPLES:
                counts._add_batch(pending)
                pending, size = [], 0
        counts._add_batch(pending)
        return counts

    def _add_batch(self, sequences: list[np.ndarray]) -> None:
        if not sequences:
            return
        # a separator code Q between sequences: n-grams containing it are dropped, so none spans two sequences
        Q = self.classes
        sequences = [np.asarray(c).astype(np.int64).ravel() for c in sequences]
        for c in sequences:
            if c.size and (c.min() < 0 or c.max() >= Q):
                raise ValueError(f"codes must be in [0, {Q}), got values in [{c.min()}, {c.max()}]")
        joined = np.concatenate([np.append(c, Q) for c in sequences])
        body = joined[joined < Q]
        self.unigram += np.bincount(body, minlength=Q)
        a, b, c = joined[:-2], joined[1:-1], joined[2:]
        pairs = (joined[:-1] < Q) & (joined[1:] < Q)
        self.bigram += np.bincount(joined[:-1][pairs] * Q + joined[1:][pairs], minlength=Q * Q).reshape(Q, Q)
        triples = (a < Q) & (b < Q) & (c < Q)
        self.trigram += np.bincount((a[triples] * Q + b[triples]) * Q + c[triples], minlength=Q**3).reshape(Q, Q, Q)


FIT_BATCH_SAMPLES = 1 << 23
MAX_FIT_SAMPLES = 16000 * 3600 * 2  # two hours at 16 kHz, counted in seconds; larger splits are thinned by record


def fit_split(manifest_uri: str, split: str = "train", max_samples: int = MAX_FIT_SAMPLES) -> NgramCounts:
    """Counts over a split's records, read once without TensorFlow; a split above max_samples is thinned by taking
    every k-th record, so the fit stays a few seconds whatever the collection's size."""
    from waveforms.manifest import iter_segments, load_manifest

    manifest = load_manifest(manifest_uri)
    total = int(manifest["splits"].get(split, {}).get("samples", 0))
    stride = max(1, math.ceil(total / max_samples))
    segments = iter_segments(manifest, manifest_uri, split)
    return NgramCounts.fit(
        np.frombuffer(segment.audio, dtype=np.uint8) for index, segment in enumerate(segments) if index % stride == 0
    )


def _discount(counts: np.ndarray) -> float:
    """Ney's absolute discount from the count-of-counts; 0.5 when the counts are too few to estimate it."""
    n1, n2 = int(np.count_nonzero(counts == 1)), int(np.count_nonzero(counts == 2))
    if n1 == 0 or n1 + 2 * n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


class _Interpolated:
    """Interpolated absolute discounting over the last axis of a count array (..., Q), evaluated only where asked:

    P(c | h) = max(N(h, c) - D, 0) / N(h) + D · types(h) / N(h) · lower(c | h'),  and lower(c | h') when N(h) = 0.
    """

    def __init__(self, counts: np.ndarray, lower):
        self.counts = counts
        self.total = counts.sum(axis=-1)  # (...) N(h)
        self.types = np.count_nonzero(counts, axis=-1)  # (...) distinct continuations of h
        self.discount = _discount(counts)
        self.lower = lower  # callable(history index tuple without its first axis, c) -> probabilities

    def __call__(self, history: tuple[np.ndarray, ...], c: np.ndarray) -> np.ndarray:
        total = self.total[history].astype(np.float64)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        lower = self.lower(history[1:], c)
        own = np.maximum(self.counts[(*history, c)] - self.discount, 0.0) / safe
        return np.where(seen, own + self.discount * self.types[history] / safe * lower, lower)


def models(counts: NgramCounts) -> dict:
    """The three smoothed models as callables of (history codes..., next code) arrays -> probabilities."""
    Q = counts.classes
    unigram_table = (counts.unigram + 1.0) / (counts.unigram.sum() + Q)  # add-one: every code keeps some mass
    bigram = _Interpolated(counts.bigram, lambda _, c: unigram_table[c])
    # Kneser-Ney: the lower orders of the trigram count in how many contexts a continuation was seen
    continuation_unigram = np.count_nonzero(counts.bigram, axis=0) + 1.0  # (Q,) distinct b before c, add-one
    continuation_unigram /= continuation_unigram.sum()
    continuation = np.count_nonzero(counts.trigram, axis=0).astype(np.int64)  # (Q, Q) [b, c]: distinct a before b, c
    continuation_bigram = _Interpolated(continuation, lambda _, c: continuation_unigram[c])
    trigram = _Interpolated(counts.trigram, lambda history, c: continuation_bigram(history, c))
    return {
        "unigram": lambda c: unigram_table[c],
        "bigram": lambda b, c: bigram((b,), c),
        "trigram": lambda a, b, c: trigram((a, b), c),
    }


def score(counts: NgramCounts, windows: np.ndarray, scored: int) -> dict[str, float]:
    """Mean bits per sample of each baseline over the last `scored` targets of every window.

    windows: (N, L + 1) codes, as evaluation reads them (x = windows[:, :-1] predicts y = windows[:, 1:]); the n-gram
    context of each scored target comes from the window itself, so L - scored >= 2 is required for the trigram.
    """
    windows = np.asarray(windows).astype(np.int64)
    if windows.ndim != 2 or scored < 1 or windows.shape[1] < scored + 3:
        raise ValueError(f"score: need windows (N, L + 1) with L >= scored + 2, got {windows.shape}, scored={scored}")
    model = models(counts)
    c = windows[:, -scored:].ravel()  # (N·T,) targets
    b = windows[:, -scored - 1 : -1].ravel()  # one back
    a = windows[:, -scored - 2 : -2].ravel()  # two back
    probabilities = {
        "unigram": model["unigram"](c),
        "bigram": model["bigram"](b, c),
        "trigram": model["trigram"](a, b, c),
    }
    bits = {"uniform": math.log2(counts.classes)}
    for name, p in probabilities.items():
        bits[name] = float(-np.mean(np.log2(p)))
    return bits


def best(bits: dict[str, float]) -> tuple[str, float]:
    """(name, bits) of the strongest baseline."""
    name = min(ORDERS, key=lambda order: bits.get(order, math.inf))
    return name, bits[name]


def for_evaluation(manifest_uri: str, evaluation, scored: int) -> dict:
    """Every baseline fitted on the training split and scored on exactly the evaluation windows' scored targets;
    -> {uniform, unigram, bigram, trigram: bits, best: name, windows, songs, fit_samples, seconds}."""
    import time

    began = time.perf_counter()
    counts = fit_split(manifest_uri)
    bits = score(counts, evaluation.windows, scored)
    return {**bits, "best": best(bits)[0], "windows": len(evaluation.windows), "songs": evaluation.songs,
            "fit_samples": int(counts.unigram.sum()), "seconds": round(time.perf_counter() - began, 2)}  # fmt: skip
