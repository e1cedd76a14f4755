"""Bounds: every size parameter has an upper bound checked before work, and the memory a generation or sound space
would hold is compared with what this machine has; each refusal is one line."""

from __future__ import annotations

import json
import math

import pytest
from helpers import TINY_AUTOENCODER, TINY_WAVENET

from waveforms import cli, convert, limits, synth
from waveforms.train import TrainConfig


@pytest.fixture(scope="module")
def wavenet_export(tmp_path_factory):
    """A model folder holding only the exported configuration (the bounds are checked before any weight is read)."""
    folder = tmp_path_factory.mktemp("wavenet")
    config = {"model_kind": "wavenet", "model": TINY_WAVENET.to_dict(), "sample_rate": 16000, "genres": []}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def autoencoder_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoencoder")
    (folder / "autoencoder.json").write_text(json.dumps({"model": "autoencoder", "config": TINY_AUTOENCODER.to_dict()}))
    synth.write_dataset(folder / "corners", count=4, seed=0, seconds=0.5, families=["bell"])  # 4 corners
    return folder


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seconds", "inf"], "--seconds: got inf"),
        (["--seconds", "1e9"], "--seconds: got 1000000000.0; it must be a number in (0, 3600]"),
        (["--seconds", "nan"], "--seconds: got nan"),
        (["--seconds", "1", "--temperature", "inf"], "--temperature: got inf"),
        (["--seconds", "1", "--temperature", "0"], "--temperature: got 0.0"),
        (["--seconds", "1", "--min-p", "1.5"], "--min-p: got 1.5; it must be a number in [0, 1]"),
        (["--seconds", "1", "--min-p", "nan"], "--min-p: got nan"),
        (["--seconds", "1", "--batch", "100000"], "--batch: got 100000"),
        (
            ["--seconds", "1", "--particles", "2", "--sharpen", "-1"],
            "--sharpen: got -1.0; it must be a number in [0, 10]",
        ),
        (["--seconds", "1", "--particles", "0"], "--particles: got 0; it must be a whole number in [1, 256]"),
        (
            ["--seconds", "1", "--batch", "4", "--particles", "100"],
            "--particles: got 100; it must be a whole number in [1, 64]",
        ),
        (["--seconds", "3600", "--batch", "256"], "GiB of memory, more than 80% of the"),
    ],
)
def test_generate_refuses_out_of_bounds_sizes_in_one_line(wavenet_export, tmp_path, capsys, flags, message):
    code = cli.main(["generate", str(wavenet_export), str(tmp_path / "out.wav"), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seconds", "1e7"], "--seconds: got 10000000.0; it must be a number in (0, 60]"),
        (["--seconds", "1", "--temperature", "inf"], "--temperature: got inf"),
        (["--seconds", "1", "--max-batch", "1000000"], "--max-batch: got 1000000"),
        (["--seconds", "60", "--resolution", "64"], "GiB of memory, more than 80% of the"),
    ],
)
def test_soundspace_refuses_out_of_bounds_sizes_in_one_line(autoencoder_export, tmp_path, capsys, flags, message):
    corners = sorted(str(path) for path in (autoencoder_export / "corners" / "bell").iterdir())
    resolution = [] if "--resolution" in flags else ["--resolution", "3"]
    code = cli.main(["soundspace", str(autoencoder_export), str(tmp_path / "space"), "--corners", *corners,
                     *resolution, *flags])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "space").exists()


@pytest.mark.parametrize(
    "field, value", [("batch_size", 100_000), ("target_length", 2**21), ("steps", 10**10), ("batch_size", 2.5)]
)
def test_train_sizes_have_upper_bounds(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value}).validate()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--segment-seconds", "0.00001"], "--segment-seconds: got 1e-05; it must be a number in [0.01, 3600]"),
        (["--segment-seconds", "inf"], "--segment-seconds: got inf"),
        (["--shard-mb", "1e12"], "--shard-mb"),
        (["--workers", "1000"], "--workers: got 1000"),
    ],
)
def test_convert_sizes_have_bounds(tmp_path, capsys, flags, message):
    (tmp_path / "in").mkdir()
    code = cli.main(["convert", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", *flags])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {err[7:]}" and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_check_range_and_available_memory():
    limits.check_range("x", 5, 1, 10, integer=True)
    for bad in (0, 11, 2.5, math.inf, math.nan, True, "3"):
        with pytest.raises(ValueError, match="x: got"):
            limits.check_range("x", bad, 1, 10, integer=True)
    available = limits.available_memory_bytes()
    assert available is not None and 0 < available < 2**50
    assert convert.ConvertConfig(segment_seconds=0.01).validate() is None
