"""Atomic dataset publication: content-named shards, manifest last, readers that check shards against the manifest,
and real SIGKILLs of a conversion into a folder that already holds a dataset (local disk and SeaweedFS)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from waveforms import convert, dataset, storage, synth
from waveforms.manifest import ShardError, iter_segments, merge_parts, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = convert.ConvertConfig(segment_seconds=0.5, shard_megabytes=0.05, workers=1)
CLI_FLAGS = ["--segment-seconds", "0.5", "--shard-mb", "0.05", "--workers", "1", "--quiet"]


def cli(*args, env=None, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "waveforms.cli", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two different collections: `old` is converted first, `new` over it."""
    root = tmp_path_factory.mktemp("inputs")
    synth.write_dataset(root / "old", count=6, seed=1, seconds=1.0)
    synth.write_dataset(root / "new", count=40, seed=2, seconds=2.0)
    return root


def manifest_of(out: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(out, "manifest.json")))


def shard_names(manifest: dict) -> set[str]:
    return {shard["file"] for split in manifest["splits"].values() for shard in split["shards"]}


def test_manifest_lists_bytes_and_sha256_and_verify_passes(inputs, tmp_path):
    out = str(tmp_path / "ds")
    convert.convert(str(inputs / "old"), out, CONFIG, progress=False)
    manifest = manifest_of(out)
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            path = os.path.join(out, shard["file"])
            assert shard["bytes"] == os.path.getsize(path)
            assert shard["file"].endswith(f"-{shard['sha256'][:16]}.tfrecord")
    process = cli("verify", out)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert f"{sum(len(s['shards']) for s in manifest['splits'].values())} shards" in err


def damage(out: str, how: str) -> str:
    manifest = manifest_of(out)
    name = manifest["splits"]["train"]["shards"][1]["file"]
    path = os.path.join(out, name)
    data = bytearray(open(path, "rb").read())
    if how == "flipped byte":
        data[len(data) // 2] ^= 0x40
        open(path, "wb").write(bytes(data))
    elif how == "truncated":
        open(path, "wb").write(bytes(data[: len(data) // 2]))
    elif how == "deleted":
        os.remove(path)
    elif how == "other run's shard":  # same name, another conversion's bytes
        other = manifest["splits"]["train"]["shards"][0]["file"]
        shutil.copyfile(os.path.join(out, other), path)
    return name


@pytest.mark.parametrize("how", ["flipped byte", "truncated", "deleted", "other run's shard"])
def test_damaged_shard_is_refused_in_one_line_naming_it(inputs, tmp_path, how):
    out = str(tmp_path / "ds")
    convert.convert(str(inputs / "old"), out, CONFIG, progress=False)
    name = damage(out, how)
    process = cli("verify", out)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and name in err, err
    manifest_uri = os.path.join(out, "manifest.json")
    manifest = manifest_of(out)
    if how != "flipped byte":  # the cheap check at open (sizes, record headers) catches everything but a flipped bit
        with pytest.raises(ShardError, match=name):
            dataset.make_dataset(manifest_uri, window_length=100, batch_size=2)
        with pytest.raises(ShardError, match=name):
            list(iter_segments(manifest, manifest_uri, "train"))


def test_manifest_moved_away_from_its_shards_is_refused(inputs, tmp_path):
    out = str(tmp_path / "ds")
    convert.convert(str(inputs / "old"), out, CONFIG, progress=False)
    os.makedirs(tmp_path / "elsewhere")
    shutil.copy(os.path.join(out, "manifest.json"), tmp_path / "elsewhere" / "manifest.json")
    with pytest.raises(ShardError, match="does not exist"):
        verify(str(tmp_path / "elsewhere" / "manifest.json"))


@pytest.mark.slow
def test_publishing_over_a_dataset_replaces_it_and_removes_only_stale_shards(inputs, tmp_path):
    out = str(tmp_path / "ds")
    convert.convert(str(inputs / "old"), out, CONFIG, progress=False)
    old = shard_names(manifest_of(out))
    (tmp_path / "ds" / "notes.txt").write_text("not ours")
    convert.convert(str(inputs / "new"), out, CONFIG, progress=False)
    new = shard_names(manifest_of(out))
    assert not old & new
    tfrecords = {name for name in os.listdir(out) if name.endswith(".tfrecord")}
    assert tfrecords == new
    assert (tmp_path / "ds" / "notes.txt").exists()
    verify(os.path.join(out, "manifest.json"))


@pytest.mark.slow
def test_a_part_from_another_conversion_is_refused_by_merge(inputs, tmp_path):
    out = str(tmp_path / "fan")
    convert.convert(str(inputs / "old"), out, convert.ConvertConfig(shard_index=0, num_shards=2), progress=False)
    convert.convert(str(inputs / "new"), out, convert.ConvertConfig(shard_index=1, num_shards=2), progress=False)
    with pytest.raises(ValueError, match="part-00001-of-00002.*another conversion"):
        merge_parts(out, 2)
    assert not os.path.exists(os.path.join(out, "manifest.json"))
    (tmp_path / "fan" / "manifest-part-00001-of-00002.json").write_text("{not json")
    process = cli("convert", "--merge", "--num-shards", "2", out)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and err.count("\n") == 1 and "part-00001-of-00002" in err, err


# ---------------------------------------------------------------------------------------------- SIGKILL at any time


def kill_when(process: subprocess.Popen, condition, timeout: float = 120.0) -> bool:
    """SIGKILL the process as soon as condition() holds; -> False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.kill()
    raise AssertionError("condition never held")


def assert_whole(out: str, old_manifest: dict, new_manifest: dict) -> str:
    """The folder holds exactly one complete dataset, the old or the new one, every shard matching its entry."""
    manifest = manifest_of(out)
    which = "old" if manifest == old_manifest else "new" if manifest == new_manifest else None
    assert which, "manifest.json is neither the old nor the new dataset"
    verify(storage.join(out, "manifest.json"))
    return which


def sigkill_moments(out: str, old_names: set[str]):
    """Conditions, each a distinct moment of a conversion into `out` that holds the old dataset."""

    def present() -> set[str]:
        try:
            return {uri.rsplit("/", 1)[-1] for uri in storage.list_files(out, suffix=".tfrecord")}
        except storage.StorageError:
            return set()

    def new_shard_written():
        return bool(present() - old_names)

    def several_new_shards_written():
        return len(present() - old_names) >= 5

    def part_manifest_written():
        return storage.exists(storage.join(out, "manifest-part-00000-of-00001.json"))

    def manifest_replaced():
        try:
            return shard_names(manifest_of(out)) != old_names
        except (storage.StorageError, ValueError):
            return False

    return {
        "first new shard": new_shard_written,
        "five new shards": several_new_shards_written,
        "part manifest": part_manifest_written,
        "manifest replaced": manifest_replaced,
    }


def run_sigkills(inputs, out: str, reference: str, env=None) -> dict[str, str]:
    convert.convert(str(inputs / "new"), reference, CONFIG, progress=False)
    new_manifest = manifest_of(reference)
    outcomes = {}
    for moment in ("first new shard", "five new shards", "part manifest", "manifest replaced"):
        convert.convert(str(inputs / "old"), out, CONFIG, progress=False)
        old_manifest = manifest_of(out)
        condition = sigkill_moments(out, shard_names(old_manifest))[moment]
        process = cli("convert", str(inputs / "new"), out, *CLI_FLAGS, env=env)
        killed = kill_when(process, condition)
        outcomes[moment] = assert_whole(out, old_manifest, new_manifest) + (" (killed)" if killed else " (finished)")
        # the next conversion publishes whole and clears every leftover
        done = cli("convert", str(inputs / "new"), out, *CLI_FLAGS, env=env)
        _, err = done.communicate(timeout=300)
        assert done.returncode == 0, err
        assert assert_whole(out, old_manifest, new_manifest) == "new"
        left = {uri.rsplit("/", 1)[-1] for uri in storage.list_files(out, suffix=".tfrecord")}
        assert left == shard_names(new_manifest)
    return outcomes


@pytest.mark.integration
def test_sigkill_at_any_moment_of_a_conversion_into_a_local_dataset(inputs, tmp_path):
    outcomes = run_sigkills(inputs, str(tmp_path / "ds"), str(tmp_path / "reference"))
    # before the manifest write the old dataset stands whole; once replaced, the new one does
    assert outcomes["first new shard"] == outcomes["five new shards"] == "old (killed)", outcomes
    assert outcomes["manifest replaced"].startswith("new"), outcomes


@pytest.mark.integration
def test_sigkill_at_any_moment_of_a_conversion_into_object_storage(inputs, tmp_path, s3_env, s3_prefix):
    outcomes = run_sigkills(inputs, s3_prefix + "/ds", s3_prefix + "/reference", env=s3_env)
    assert outcomes["first new shard"] == outcomes["five new shards"] == "old (killed)", outcomes
    assert outcomes["manifest replaced"].startswith("new"), outcomes
