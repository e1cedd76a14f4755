"""Streaming conversion: shards go to OUT_URI as they fill (local staging holds at most one open shard per split);
staging is removed on SIGTERM (and the lease released); leftovers of a SIGKILL are removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from waveforms import convert, synth
from waveforms.manifest import iter_segments, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    synth.write_dataset(folder, count=40, seed=3, seconds=2.0)
    return folder


def start(songs, out, staging_root) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "waveforms.cli", "convert", str(songs), str(out), "--workers", "1", "--shard-mb",
         "0.05", "--segment-seconds", "0.5", "--quiet"],
        env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(staging_root)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_shards(out, count: int, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(out) and sum(name.endswith(".tfrecord") for name in os.listdir(out)) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    raise AssertionError("no shards appeared")


def staged_files(staging_root) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(staging_root) for n in names]


@pytest.mark.integration
def test_shards_are_uploaded_as_they_fill_and_sigterm_cleans_up(songs, tmp_path):
    staging_root, out = tmp_path / "tmp", tmp_path / "ds"
    staging_root.mkdir()
    process = start(songs, out, staging_root)
    wait_for_shards(out, 3, process)  # shards reached OUT_URI long before the conversion ends
    assert process.poll() is None
    assert len([f for f in staged_files(staging_root) if f.endswith(".tfrecord")]) <= 2  # one open shard per split
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert os.listdir(staging_root) == []
    assert not os.path.exists(out / ".waveforms-lease-dataset.json")
    assert not os.path.exists(out / "manifest.json")  # nothing published


@pytest.mark.integration
def test_a_sigkilled_conversion_leaves_staging_that_the_next_run_removes(songs, tmp_path):
    staging_root, out = tmp_path / "tmp", tmp_path / "ds"
    staging_root.mkdir()
    process = start(songs, out, staging_root)
    wait_for_shards(out, 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    leftovers = os.listdir(staging_root)
    assert leftovers and all(name.startswith(f"waveforms-convert-{process.pid}-") for name in leftovers)
    again = start(songs, out, staging_root)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert os.listdir(staging_root) == []
    verify(str(out / "manifest.json"))
    listed = json.loads((out / "manifest.json").read_text())
    files = {shard["file"] for split in listed["splits"].values() for shard in split["shards"]}
    assert {name for name in os.listdir(out) if name.endswith(".tfrecord")} == files  # strays of the kill removed


def test_staging_of_live_processes_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    live = tmp_path / f"waveforms-convert-{os.getpid()}-abc"
    live.mkdir()
    convert.remove_dead_staging()
    assert live.exists()


@pytest.mark.integration
def test_a_rerun_after_sigkill_resumes_and_gives_the_same_dataset(songs, tmp_path):

    staging_root, out = tmp_path / "tmp", tmp_path / "ds"
    staging_root.mkdir()
    reference = start(songs, tmp_path / "reference", staging_root)
    assert reference.wait(timeout=300) == 0
    process = start(songs, out, staging_root)
    wait_for_shards(out, 6, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert any(name.startswith(".waveforms-progress-") for name in os.listdir(out))
    again = start(songs, out, staging_root)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    resumed = int(err.split("resuming: ")[1].split(" of 40")[0])
    assert 0 < resumed < 40, err
    assert not any(name.startswith(".waveforms-progress-") for name in os.listdir(out))
    verify(str(out / "manifest.json"))

    def contents(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        segments = sorted(
            (s.song_id, s.offset, s.audio)
            for split in ("train", "validation")
            for s in iter_segments(manifest, str(folder / "manifest.json"), split)
        )
        return manifest["songs"], manifest["totals"], segments

    assert contents(out) == contents(tmp_path / "reference")  # the same records, only the shard boundaries differ
