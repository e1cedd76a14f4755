"""Leases: one writer per dataset or model folder, on local disk and SeaweedFS. A second writer fails at once naming
the first; a stale lease (dead pid on this host, expired heartbeat) is taken over with a warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import TINY_WAVENET, synth_dataset

from waveforms import checkpoints, storage, synth
from waveforms.manifest import verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "waveforms.cli", *args],
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition never held")


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    root = tmp_path_factory.mktemp("collections")
    synth.write_dataset(root / "a", count=30, seed=1, seconds=2.0)
    synth.write_dataset(root / "b", count=5, seed=2, seconds=1.0)
    return root


def lease_uri(folder: str, name: str = "dataset") -> str:
    return storage.join(folder, f".waveforms-lease-{name}.json")


def concurrent_converts(collections, out: str, env=None):
    first = start("convert", str(collections / "a"), out, "--workers", "1", "--quiet", env=env)
    wait_for(lambda: storage.exists(lease_uri(out)))
    holder = json.loads(storage.read_bytes(lease_uri(out)))
    assert holder["pid"] == first.pid and holder["owner"] == "convert" and holder["host"] == socket.gethostname()
    began = time.monotonic()
    second = start("convert", str(collections / "b"), out, "--quiet", env=env)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1 and time.monotonic() - began < 20
    assert err.startswith("error: ") and f"pid {first.pid} on host {socket.gethostname()}" in err, err
    assert first.poll() is None, "the second writer must fail while the first still runs"
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    manifest = verify(storage.join(out, "manifest.json"))
    assert manifest["shards"] > 0
    songs = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))["totals"]["songs"]
    assert songs == 30  # the first conversion's dataset, whole
    assert not storage.exists(lease_uri(out))  # released


@pytest.mark.integration
def test_a_second_convert_into_the_same_local_dataset_fails_at_once_naming_the_first(collections, tmp_path):
    concurrent_converts(collections, str(tmp_path / "ds"))


def test_a_second_convert_into_the_same_object_storage_dataset_fails_at_once(collections, s3_env, s3_prefix):
    concurrent_converts(collections, s3_prefix + "/ds", env=s3_env)


def write_lease(folder, name, **fields):
    record = {"owner": "convert", "host": socket.gethostname(), "pid": os.getpid(), "token": "someone-else",
              "started": time.time(), "heartbeat": time.time(), **fields}  # fmt: skip
    storage.write_bytes(lease_uri(folder, name), json.dumps(record).encode())


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    "stale",
    [
        {"pid": "dead"},  # killed on this host
        {"host": "another-host", "heartbeat": time.time() - 3600},  # expired heartbeat elsewhere
        {"host": "another-host", "pid": 1, "heartbeat": "garbage"},  # damaged record
    ],
)
def test_a_stale_lease_is_taken_over_with_a_warning(tmp_path, caplog, stale):
    if stale.get("pid") == "dead":
        stale = {"pid": dead_pid()}
    folder = str(tmp_path / "ds")
    write_lease(folder, "dataset", **stale)
    with caplog.at_level(logging.WARNING, logger="waveforms.storage"):
        with storage.Lease(folder, "dataset", "convert") as lease:
            assert json.loads(storage.read_bytes(lease.uri))["token"] == lease.token
    assert any("taking over the stale lease" in record.getMessage() for record in caplog.records)
    assert not os.path.exists(lease_uri(folder))


def test_a_live_lease_elsewhere_is_respected_and_fan_out_tasks_coexist(tmp_path):
    folder = str(tmp_path / "ds")
    write_lease(folder, "dataset", host="another-host", pid=4242)
    with pytest.raises(storage.LeaseHeldError, match="pid 4242 on host another-host"):
        storage.Lease(folder, "dataset", "convert").acquire()
    with pytest.raises(storage.LeaseHeldError):  # a task must not write into a dataset being published
        storage.Lease(folder, "task-00000-of-00002", "convert", exclusive=False).acquire()
    os.remove(lease_uri(folder))
    with storage.Lease(folder, "task-00000-of-00002", "convert", exclusive=False):
        with storage.Lease(folder, "task-00001-of-00002", "convert", exclusive=False):
            with pytest.raises(storage.LeaseHeldError, match="in use"):  # a merge waits for every task
                storage.Lease(folder, "dataset", "convert --merge").acquire()


def test_a_lease_taken_over_is_noticed_before_publishing(tmp_path):
    folder = str(tmp_path / "ds")
    with storage.Lease(folder, "dataset", "convert") as lease:
        write_lease(folder, "dataset", host="another-host")
        with pytest.raises(storage.LeaseHeldError, match="lost the lease"):
            lease.check()


@pytest.mark.integration
def test_a_second_train_on_one_model_fails_at_once_naming_the_first(tmp_path):
    data = synth_dataset(tmp_path, count=6, seed=0, seconds=0.5)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_WAVENET.to_dict()))
    model = str(tmp_path / "model")
    args = ["train", data, model, "--config", str(config), "--batch-size", "4", "--target-length", "200",
            "--eval-windows", "4", "--warmup-steps", "1", "--no-progress", "--no-jit"]  # fmt: skip
    first = start(*args, "--steps", "100000", "--checkpoint-every", "20", "--eval-every", "1000")
    try:
        wait_for(lambda: os.path.exists(lease_uri(model, "train")))
        second = start(*args, "--steps", "100000", "--checkpoint-every", "20", "--eval-every", "1000")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1, err
        assert err.splitlines()[-1].startswith("error: ") and f"train by pid {first.pid}" in err.splitlines()[-1]
        assert first.poll() is None
        folder = os.path.join(model, "checkpoints")
        wait_for(lambda: os.path.isdir(folder) and checkpoints.checkpoint_numbers(folder))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed run's lease is stale (dead pid on this host): the next run takes it over and resumes
    steps = str(max(checkpoints.checkpoint_numbers(os.path.join(model, "checkpoints"))) + 20)
    third = start(*args, "--steps", steps, "--checkpoint-every", "20", "--eval-every", steps)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    assert "taking over the stale lease" in err and "resumed from" in err


def test_a_training_whose_lease_was_taken_over_saves_no_checkpoint(tmp_path):
    import tensorflow as tf

    model = str(tmp_path / "model")
    variable = tf.Variable(1.0)
    with storage.Lease(model, "train", "train") as lease:
        store = checkpoints.CheckpointStore(tf.train.Checkpoint(v=variable), model, model, {}, 3, lease=lease)
        store.save(1)
        write_lease(model, "train", host="another-host")  # a second run decided we were dead and took over
        with pytest.raises(storage.LeaseHeldError, match="lost the lease"):
            store.save(2)
    assert checkpoints.checkpoint_numbers(os.path.join(model, "checkpoints")) == [1]
