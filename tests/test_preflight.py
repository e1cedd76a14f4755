"""Check before work: a bad output location, wrong credentials, an unreachable endpoint or https against an http
server fail in one line before the first decode (a fake ffmpeg on PATH records whether any decode started)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from waveforms import synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    synth.write_dataset(folder, count=3, seed=4, seconds=1.0)
    return folder


@pytest.fixture
def counting_ffmpeg(tmp_path):
    """PATH with an ffmpeg that notes each start in a log, then runs the real one; -> (env, log path)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "ffmpeg-starts.log"
    bin_dir.mkdir()
    real = subprocess.run(["sh", "-c", "command -v ffmpeg"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = bin_dir / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho started >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def convert(songs, out, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "waveforms.cli", "convert", str(songs), out, "--quiet"],
        env={**os.environ, "PYTHONPATH": ROOT, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_wrapper_sees_decodes_of_a_good_run(songs, tmp_path, counting_ffmpeg):
    env, log = counting_ffmpeg
    result = convert(songs, str(tmp_path / "out"), env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().count("started") == 3


def bad_outputs(tmp_path, s3_server, s3_prefix):
    (tmp_path / "a-file").write_text("I am a file")
    return {
        "output path is a file": (str(tmp_path / "a-file"), {}, "is a file, not a folder"),
        "output below a file": (str(tmp_path / "a-file" / "ds"), {}, "cannot write under"),
        "wrong secret": (s3_prefix + "/ds", {"AWS_SECRET_ACCESS_KEY": "wrong"}, "refused access key id"),
        "unreachable endpoint": (
            s3_prefix + "/ds",
            {"S3_ENDPOINT": f"http://127.0.0.1:{free_port()}", "WAVEFORMS_S3_ATTEMPTS": "2"},
            "no answer after 2 attempt",
        ),
        "https against http": (
            s3_prefix + "/ds",
            {"S3_ENDPOINT": s3_server.endpoint.replace("http://", "https://")},
            "TLS failed",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["output path is a file", "output below a file", "wrong secret", "unreachable endpoint", "https against http"],
)
def test_bad_output_fails_in_one_line_before_any_decode(songs, tmp_path, counting_ffmpeg, s3_server, s3_prefix, case):
    out, overrides, message = bad_outputs(tmp_path, s3_server, s3_prefix)[case]
    env, log = counting_ffmpeg
    result = convert(songs, out, {**s3_server.env(), **env, **overrides})
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]  # (retry notices may come first)
    assert last.startswith("error: ") and message in last and "Traceback" not in result.stderr, result.stderr
    assert not log.exists(), "a decode started before the output was checked"


@pytest.mark.slow
def test_train_into_a_model_uri_that_is_a_file_fails_in_one_line(tmp_path):
    (tmp_path / "model").write_text("I am a file")
    result = subprocess.run(
        [sys.executable, "-m", "waveforms.cli", "train", str(tmp_path / "no-dataset"), str(tmp_path / "model")],
        env={**os.environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"error: {tmp_path / 'model'} is a file, not a folder"
    assert "Traceback" not in result.stderr


def test_ingest_into_a_path_that_is_a_file_fails_in_one_line_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("I am a file")
    result = subprocess.run(
        [sys.executable, "-m", "waveforms.cli", "ingest", "--source", "synth", "--count", "2", "--out",
         str(tmp_path / "a-file"), "--no-progress"],
        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'a-file'} is a file, not a folder\n"
