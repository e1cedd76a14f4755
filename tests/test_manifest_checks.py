"""Lying manifests and damaged shards are refused before (or, for a flipped bit, during) training in one line naming
what is wrong: sample rate, counts, genres, segment length, a shard whose data CRC fails mid-run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers import TINY_WAVENET

from waveforms import cli, convert, synth
from waveforms.manifest import check_shards, load_manifest, verify


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """6 two-second notes, one record per song (segment 2 s), every split in one shard."""
    root = tmp_path_factory.mktemp("pristine")
    synth.write_dataset(root / "wav", count=6, seed=0, seconds=2.0)
    config = convert.ConvertConfig(segment_seconds=2.0, validation_fraction=0.34)
    convert.convert(str(root / "wav"), str(root / "data"), config, progress=False)
    return root / "data"


@pytest.fixture
def data(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "data")
    return tmp_path / "data"


def edit(folder, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def train_cli(data, tmp_path, capsys, *extra) -> tuple[int, str]:
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_WAVENET.to_dict()))
    code = cli.main(["train", str(data), str(tmp_path / "model"), "--config", str(config), "--steps", "3",
                     "--batch-size", "4", "--target-length", "200", "--eval-windows", "4", "--warmup-steps", "1",
                     "--checkpoint-every", "3", "--eval-every", "3", "--no-progress", "--no-jit", *extra])  # fmt: skip
    return code, capsys.readouterr().err


def times_100(manifest):
    for song in manifest["songs"]:
        song["samples"] *= 100


def negative(manifest):
    manifest["songs"][0]["samples"] = -5


def genres_cut_short(manifest):
    manifest["genres"] = manifest["genres"][:1]


def segment_zero(manifest):
    manifest["segment_samples"] = 0


def rate_halved(manifest):
    manifest["sample_rate"] //= 2


def records_plus_one(manifest):
    manifest["splits"]["train"]["shards"][0]["records"] += 1


def shard_samples_inflated(manifest):
    shard = manifest["splits"]["train"]["shards"][0]
    shard["samples"] = shard["bytes"] * 2


LIES = {
    "sample counts x100": (times_100, "add up to"),
    "negative sample count": (negative, "whole number of samples"),
    "genre list cut short": (genres_cut_short, "not in the genre list"),
    "segment_samples 0": (segment_zero, "segment_samples 0"),
    "wrong sample rate": (rate_halved, "records at 16000 Hz, the manifest"),
    "record count": (records_plus_one, "records, the manifest lists"),
    "samples beyond the bytes": (shard_samples_inflated, "cannot fit in"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_manifest_is_refused_before_training_in_one_line(data, tmp_path, capsys, lie):
    change, message = LIES[lie]
    edit(data, change)
    extra = ["--genre-conditioning"] if lie == "genre list cut short" else []
    code, err = train_cli(data, tmp_path, capsys, *extra)
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: ") and message in last, err
    assert "Traceback" not in err
    assert not (tmp_path / "model" / "checkpoints").exists()


def test_a_flipped_bit_found_mid_training_names_the_shard(data, tmp_path, capsys):
    manifest = json.loads((data / "manifest.json").read_text())
    shard = manifest["splits"]["train"]["shards"][0]["file"]
    path = data / shard
    raw = bytearray(path.read_bytes())
    raw[12 + 2000] ^= 0x01  # inside the first record's data: sizes and headers still match the manifest
    path.write_bytes(bytes(raw))
    check_shards(manifest, str(data / "manifest.json"), "train")  # the cheap check at open cannot see it
    code, err = train_cli(data, tmp_path, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: ") and shard in last and "CRC" in last, err
    assert "Traceback" not in err


def test_the_checks_pass_a_true_manifest(pristine):
    manifest = load_manifest(os.path.join(pristine, "manifest.json"))
    assert verify(os.path.join(pristine, "manifest.json"))["records"] == len(manifest["songs"])
