"""Checkpoints fall back: a damaged newest checkpoint (flipped bytes, truncated or missing data, zeroed .index) is
named in a warning and the next older intact one is restored; a damaged index file is rebuilt from the files present;
leftovers of killed writes are removed; metrics are strict JSON. Then the same through `waveforms train`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_WAVENET, synth_dataset

from waveforms import checkpoints, storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_store(model_dir, keep: int = 5):
    import tensorflow as tf

    weights = tf.Variable(np.zeros(50_000, np.float32))  # big enough that a flipped byte lands in real data
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(weights=weights, step=step)
    store = checkpoints.CheckpointStore(checkpoint, str(model_dir), str(model_dir), {"model_kind": "test"}, keep)
    return store, weights, step


def saved_three(model_dir):
    """Checkpoints at steps 1, 2, 3 whose weights are all 1.0, 2.0, 3.0."""
    store, weights, step = make_store(model_dir)
    for number in (1, 2, 3):
        weights.assign(np.full(50_000, float(number), np.float32))
        step.assign(number)
        store.save(number)
    return os.path.join(model_dir, "checkpoints")


def data_file(folder, number):
    return os.path.join(folder, f"ckpt-{number}.data-00000-of-00001")


def damage(folder, how):
    if how == "flipped bytes":
        data = bytearray(open(data_file(folder, 3), "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(data_file(folder, 3), "wb").write(bytes(data))
    elif how == "truncated data":
        data = open(data_file(folder, 3), "rb").read()
        open(data_file(folder, 3), "wb").write(data[: len(data) // 2])
    elif how == "missing data":
        os.remove(data_file(folder, 3))
    elif how == "zeroed .index":
        path = os.path.join(folder, "ckpt-3.index")
        open(path, "wb").write(bytes(os.path.getsize(path)))


@pytest.mark.parametrize("how", ["flipped bytes", "truncated data", "missing data", "zeroed .index"])
def test_damaged_newest_checkpoint_falls_back_to_the_older_intact_one(tmp_path, caplog, how):
    folder = saved_three(tmp_path)
    damage(folder, how)
    store, weights, step = make_store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="waveforms.checkpoints"):
        restored = store.restore_latest()
    assert restored == os.path.join(folder, "ckpt-2")
    assert int(step.numpy()) == 2 and np.all(weights.numpy() == 2.0)
    assert any("ckpt-3 is damaged" in record.getMessage() for record in caplog.records)
    import tensorflow as tf

    assert tf.train.latest_checkpoint(folder) == restored  # the index names what was restored
    assert not os.path.exists(os.path.join(folder, "ckpt-3.index"))  # set aside: never tried again
    caplog.clear()
    again, _, step = make_store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="waveforms.checkpoints"):
        assert again.restore_latest() == restored and int(step.numpy()) == 2
    assert not caplog.records
    again.save(3)  # training goes on over the damaged step
    assert make_store(tmp_path)[0].restore_latest() == os.path.join(folder, "ckpt-3")


@pytest.mark.parametrize("garbage", [b"\x00" * 64, b"model_checkpoint_path: \xff\xfe garbage {{{", b""])
def test_a_damaged_index_file_is_rebuilt_from_the_checkpoints_present(tmp_path, garbage):
    folder = saved_three(tmp_path)
    open(os.path.join(folder, "checkpoint"), "wb").write(garbage)
    store, weights, step = make_store(tmp_path)
    assert store.restore_latest() == os.path.join(folder, "ckpt-3")
    assert int(step.numpy()) == 3 and np.all(weights.numpy() == 3.0)
    import tensorflow as tf

    assert tf.train.latest_checkpoint(folder) == os.path.join(folder, "ckpt-3")


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path):
    folder = saved_three(tmp_path)
    for number in (1, 2, 3):
        os.remove(data_file(folder, number))
    store, _, _ = make_store(tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="every checkpoint.*ckpt-3, ckpt-2, ckpt-1"):
        store.restore_latest()


def test_leftovers_of_killed_writes_are_removed(tmp_path):
    folder = saved_three(tmp_path)
    os.makedirs(os.path.join(folder, "ckpt-4_temp"))
    open(os.path.join(folder, "ckpt-4_temp", "part-00000-of-00001.data-00000-of-00001"), "wb").write(b"x" * 100)
    open(os.path.join(folder, "ckpt-4.data-00000-of-00001.tempstate123456"), "wb").write(b"x")
    make_store(tmp_path)[0].restore_latest()
    assert sorted(os.listdir(folder)) == sorted(
        ["checkpoint", "run_config.json"]
        + [f"ckpt-{n}.{ext}" for n in (1, 2, 3) for ext in ("index", "data-00000-of-00001")]
    )


def test_json_written_by_storage_is_strict(tmp_path):
    path = str(tmp_path / "metrics.json")
    storage.write_json(path, {"final": {"loss": float("nan"), "x": [float("inf"), 1.5]}})
    assert json.loads(open(path).read(), parse_constant=lambda name: pytest.fail(f"non-strict {name}")) == {
        "final": {"loss": None, "x": [None, 1.5]}
    }


# ------------------------------------------------------------------------------------------------ through train


def train_cli(data, model, steps: int) -> subprocess.CompletedProcess:
    config = os.path.join(model + "-tiny.json")
    with open(config, "w") as handle:
        json.dump(TINY_WAVENET.to_dict(), handle)
    return subprocess.run(
        [sys.executable, "-m", "waveforms.cli", "train", data, model, "--config", config, "--steps", str(steps),
         "--batch-size", "4", "--target-length", "200", "--checkpoint-every", "2", "--eval-every", "2",
         "--eval-windows", "4", "--warmup-steps", "1", "--no-progress", "--no-jit"],
        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.integration
def test_train_resumes_from_the_older_checkpoint_and_writes_strict_metrics(tmp_path):
    data = synth_dataset(tmp_path, count=6, seed=0, seconds=0.5)
    model = str(tmp_path / "model")
    first = train_cli(data, model, 4)
    assert first.returncode == 0, first.stderr
    newest = os.path.join(model, "checkpoints", "ckpt-4.data-00000-of-00001")
    data_bytes = bytearray(open(newest, "rb").read())
    data_bytes[len(data_bytes) // 2] ^= 0xFF
    open(newest, "wb").write(bytes(data_bytes))
    open(os.path.join(model, "checkpoints", "checkpoint"), "w").write("garbage {{{")
    resumed = train_cli(data, model, 6)
    assert resumed.returncode == 0, resumed.stderr
    assert "ckpt-4 is damaged" in resumed.stderr
    assert "resumed from " + os.path.join(model, "checkpoints", "ckpt-2") + ": step 2" in resumed.stderr
    again = train_cli(data, model, 6)  # a finished training run again: nothing to train, metrics stay strict JSON
    assert again.returncode == 0, again.stderr
    metrics = json.loads(open(os.path.join(model, "metrics.json")).read(), parse_constant=lambda c: pytest.fail(c))
    assert metrics["final"]["step"] == 6
