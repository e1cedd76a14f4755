"""Every input is an item: symlink loops, dangling links, FIFOs and devices among the inputs become per-item failures;
the good files are still converted (or ingested); a run where every input failed exits non-zero with its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from waveforms import synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = ("loop.wav", "dangling.wav", "pipe.wav", "zero.wav")


def cli(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; a hang (e.g. on a FIFO) fails the test at `timeout` instead of blocking the suite."""
    return subprocess.run(
        [sys.executable, "-m", "waveforms.cli", *args],
        env={**os.environ, "PYTHONPATH": ROOT, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def add_bad_entries(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.symlink("loop.wav", folder / "loop.wav")  # a link to itself
    os.symlink("nowhere.wav", folder / "dangling.wav")
    os.mkfifo(folder / "pipe.wav")  # opening it for reading would wait for a writer forever
    os.symlink("/dev/zero", folder / "zero.wav")  # endless bytes


@pytest.fixture
def mixed(tmp_path):
    synth.write_dataset(tmp_path / "in", count=4, seed=5, seconds=1.0, families=["bell"])
    add_bad_entries(tmp_path / "in" / "bell")
    return tmp_path / "in"


def test_convert_keeps_the_good_files_and_lists_each_bad_entry(mixed, tmp_path):
    staging = tmp_path / "tmp"
    staging.mkdir()
    result = cli(
        "convert", str(mixed), str(tmp_path / "out"), "--validation-fraction", "0", env={"TMPDIR": str(staging)}
    )
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["totals"]["songs"] == 4
    reasons = {os.path.basename(item["source"]): item["reason"] for item in manifest["skipped"]}
    assert set(reasons) == set(BAD)
    assert "symbolic links" in reasons["loop.wav"]
    assert "dangling" in reasons["dangling.wav"]
    assert "FIFO" in reasons["pipe.wav"]
    assert "character device" in reasons["zero.wav"]
    assert list(staging.iterdir()) == []  # the staging folder is gone


def test_convert_where_every_input_fails_exits_1_with_the_summary(tmp_path):
    add_bad_entries(tmp_path / "in" / "rock")
    result = cli("convert", str(tmp_path / "in"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert "every one of the 4 inputs failed" in result.stderr
    for name in BAD:
        assert f"skipped {tmp_path / 'in' / 'rock' / name}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_ingest_dir_keeps_the_good_files_and_reports_each_bad_entry(mixed, tmp_path):
    result = cli("ingest", "--source", "dir", "--input", str(mixed), "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["tracks"] == 4
    assert "Traceback" not in result.stderr
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    failed = {os.path.basename(row["item"]) for row in failures if not row["skipped"]}
    assert failed == set(BAD)
