"""The printed val_bits is an honest estimate: it agrees with a brute-force NLL over every held-out position."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from helpers import TINY_WAVENET, synth_dataset

from waveforms import dataset
from waveforms.generate import load_model
from waveforms.manifest import iter_segments, load_manifest
from waveforms.train import TrainConfig, train

TARGET_LENGTH = 300
EVAL_WINDOWS = 32


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    data = synth_dataset(root, count=16, seed=5, seconds=1.0, validation_fraction=0.25)
    config = TrainConfig(steps=40, batch_size=4, target_length=TARGET_LENGTH, learning_rate=1e-2, warmup_steps=5,
                         eval_every=40, checkpoint_every=40, eval_windows=EVAL_WINDOWS)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(data, str(root / "model"), TINY_WAVENET, config, progress=False)
    model, _ = load_model(str(root / "model"))
    return f"{data}/manifest.json", result, model


def brute_force_bits(manifest_uri: str, model) -> float:
    """Mean NLL over every held-out position with a full receptive field of context, each record run whole."""
    manifest = load_manifest(manifest_uri)
    field = TINY_WAVENET.receptive_field
    total, count = 0.0, 0
    for segment in iter_segments(manifest, manifest_uri, "validation"):
        codes = np.frombuffer(segment.audio, dtype=np.uint8).astype(np.int32)
        log_probs = log_softmax(model({"audio": codes[None, :-1]}).numpy()[0])  # (n - 1, Q)
        picked = np.take_along_axis(log_probs, codes[1:, None], axis=-1)[:, 0]  # (n - 1,): predicts codes[t + 1]
        total += -picked[field - 1 :].sum()
        count += picked.size - (field - 1)
    return total / count / math.log(2)


def estimate(manifest_uri: str, model, seed: int) -> tuple[float, float]:
    window_length = TINY_WAVENET.receptive_field + TARGET_LENGTH - 1
    sample = dataset.evaluation_windows(manifest_uri, window_length, EVAL_WINDOWS, seed=seed)
    x, y = sample.windows[:, :-1].astype(np.int32), sample.windows[:, 1:]
    log_probs = log_softmax(model({"audio": x}).numpy()[:, -TARGET_LENGTH:])
    bits = -np.take_along_axis(log_probs, y[:, -TARGET_LENGTH:, None], -1)[..., 0].mean(axis=1) / math.log(2)
    return sample.mean_and_standard_error(bits)


def test_val_bits_agrees_with_a_brute_force_nll_over_every_held_out_position(trained, capsys):
    manifest_uri, result, model = trained
    truth = brute_force_bits(manifest_uri, model)
    assert result["eval_windows"] == EVAL_WINDOWS and result["val_bits_se"] > 0
    held_out = [s for s in json.load(open(manifest_uri))["songs"] if s["split"] == "validation"]
    assert result["eval_songs"] == len(held_out) == 4
    # the printed figure is the estimator at seed 0; five seeds of the same sampler must all cover the truth
    estimates = [(result["val_bits"], result["val_bits_se"])] + [estimate(manifest_uri, model, s) for s in range(1, 8)]
    assert estimate(manifest_uri, model, 0)[0] == pytest.approx(result["val_bits"], abs=1e-3)
    with capsys.disabled():
        print(f"\nbrute force {truth:.4f} bits/sample; estimates " +
              ", ".join(f"{value:.4f} ± {error:.4f}" for value, error in estimates))  # fmt: skip
    for value, error in estimates:
        assert abs(value - truth) <= 3 * error
    # and its baselines were scored on the same windows: a trained model beats the marginal at least
    recorded = json.load(open(manifest_uri.replace("manifest.json", "") + "../model/metrics.json"))
    assert recorded["baselines"]["windows"] == EVAL_WINDOWS
    assert result["val_bits"] < recorded["baselines"]["unigram"]
