"""Conversion: shards + manifest, determinism, split by song, fan-out equals single task, bad inputs reported."""

import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from waveforms import audio, records, synth
from waveforms.convert import ConvertConfig, convert
from waveforms.manifest import iter_segments, merge_parts


def _tree_digest(folder):
    digest = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.startswith("manifest-part"):
            digest[name] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("songs")
    synth.write_dataset(str(folder), count=10, seed=3, seconds=1.0)
    return folder


def test_validation_holds_about_the_asked_share_of_the_audio_whatever_the_file_names(tmp_path):
    from waveforms.convert import list_songs

    rng = np.random.default_rng(0)
    sizes = rng.integers(1_000, 50_000, size=40)
    for index, size in enumerate(sizes):
        (tmp_path / "a" / f"g{index % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "a" / f"g{index % 3}" / f"{index:02d}.wav").write_bytes(rng.bytes(int(size)))
    songs = list_songs(str(tmp_path / "a"), 0.1)
    held = [song for song in songs if song.split == "validation"]
    share = sum(os.path.getsize(song.source) for song in held) / sizes.sum()
    assert 0.08 <= share <= 0.12 and 1 <= len(held) < len(songs)
    # rename every file (as a re-ingest might): the same contents are held out
    contents = lambda chosen: sorted(open(song.source, "rb").read()[:64] for song in chosen)  # noqa: E731
    before = contents(held)
    for path in sorted((tmp_path / "a").rglob("*.wav")):
        path.rename(path.with_name("renamed " + path.name))
    again = [song for song in list_songs(str(tmp_path / "a"), 0.1) if song.split == "validation"]
    assert contents(again) == before
    assert all(song.split == "train" for song in list_songs(str(tmp_path / "a"), 0.0))


def test_convert_writes_shards_and_manifest(songs, tmp_path):
    out = tmp_path / "ds"
    manifest = convert(str(songs), str(out), ConvertConfig(segment_seconds=0.25, shard_megabytes=0.01), progress=False)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["totals"]["songs"] == manifest["totals"]["songs"] == 10
    assert on_disk["genres"] == sorted({s["genre"] for s in on_disk["songs"]})
    assert set(on_disk["genres"]) <= set(synth.FAMILIES)
    # 1-second songs in 0.25-second records: 4 records per song
    assert on_disk["splits"]["train"]["records"] + on_disk["splits"]["validation"]["records"] == 40
    assert len(on_disk["splits"]["train"]["shards"]) > 1  # the tiny shard size forces several shards
    for split in ("train", "validation"):
        for shard in on_disk["splits"][split]["shards"]:
            with open(out / shard["file"], "rb") as f:
                assert sum(1 for _ in records.iter_records(f)) == shard["records"]
    # every song in exactly one split; the validation share is by song
    splits = {s["song_id"]: s["split"] for s in on_disk["songs"]}
    assert list(splits.values()).count("validation") == 1  # 10% of ten equal songs
    assert on_disk["held_out"] == {"requested_fraction": 0.1, "fraction": 0.1,
                                   "songs": [k for k, v in splits.items() if v == "validation"]}  # fmt: skip
    assert on_disk["statistics"]["windows"] == 10 and on_disk["statistics"]["rms_dbfs"]["p50"] < 0  # the data profile
    assert on_disk["statistics"]["periodicity"]["p50"] > 0.9  # synth notes repeat at their pitch period
    assert 0 < on_disk["statistics"]["change"]["p5"] < on_disk["statistics"]["change"]["p95"]  # notes move, unevenly
    seen = {}
    for split in ("train", "validation"):
        for segment in iter_segments(on_disk, str(out / "manifest.json"), split):
            seen.setdefault(segment.song_id, set()).add(split)
            assert segment.sample_rate == 16000 and len(segment.audio) == 4000
    assert all(len(v) == 1 and splits[k] in v for k, v in seen.items())
    assert all(len(s["sha256"]) == 64 for s in on_disk["songs"])


def test_records_hold_mu_law_of_the_source(songs, tmp_path):
    out = tmp_path / "ds"
    convert(str(songs), str(out), ConvertConfig(validation_fraction=0.0), progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    first = next(iter_segments(manifest, str(out / "manifest.json"), "train"))
    source = audio.peak_normalize(audio.decode(os.path.join(songs, first.song_id), 16000, normalize=False))
    expected = audio.mu_law_encode(source)
    got = np.frombuffer(first.audio, dtype=np.uint8)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_same_input_gives_byte_identical_output(songs, tmp_path):
    config = ConvertConfig(segment_seconds=0.5, shard_megabytes=0.02, workers=2)
    convert(str(songs), str(tmp_path / "a"), config, progress=False)
    convert(str(songs), str(tmp_path / "b"), config, progress=False)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_fan_out_matches_single_task(songs, tmp_path):
    single = convert(str(songs), str(tmp_path / "one"), ConvertConfig(), progress=False)
    for index in range(3):
        convert(str(songs), str(tmp_path / "fan"), ConvertConfig(shard_index=index, num_shards=3), progress=False)
    merged, tasks = merge_parts(str(tmp_path / "fan"), 3)
    assert [t["shard_index"] for t in tasks] == [0, 1, 2]
    single_manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    # a part's songs also carry their measured windows, which the manifest keeps only as the summed-up "statistics"
    part_songs = [{k: v for k, v in s.items() if k != "statistics_sample"} for s in single["songs"]]
    assert merged["songs"] == single_manifest["songs"] == sorted(part_songs, key=lambda s: s["song_id"])
    assert merged["statistics"] == single_manifest["statistics"]
    assert merged["genres"] == single_manifest["genres"]
    assert merged["totals"] == single_manifest["totals"]


def test_missing_part_is_a_clear_error(songs, tmp_path):
    convert(str(songs), str(tmp_path / "fan"), ConvertConfig(shard_index=0, num_shards=2), progress=False)
    with pytest.raises(FileNotFoundError, match="part-00001-of-00002"):
        merge_parts(str(tmp_path / "fan"), 2)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def test_bad_inputs_are_skipped_with_reasons(tmp_path):
    songs = tmp_path / "in" / "rock"
    songs.mkdir(parents=True)
    (songs / "empty.mp3").write_bytes(b"")
    (songs / "text.mp3").write_text("this is not audio\n" * 100)
    tone = "sine=frequency=440:duration=3"
    _ffmpeg("-f", "lavfi", "-i", tone, "-ar", "44100", "-ac", "2", str(songs / "good.mp3"))
    data = (songs / "good.mp3").read_bytes()
    (songs / "truncated.mp3").write_bytes(data[: len(data) // 3])
    _ffmpeg("-f", "lavfi", "-i", tone, "-ar", "96000", "-ac", "6", str(songs / "six_channels_96k.wav"))
    _ffmpeg("-f", "lavfi", "-i", tone, "-ar", "8000", "-c:a", "pcm_u8", str(songs / "eight_bit.wav"))
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-t", "2", str(songs / "silent.wav"))
    (songs / "notes.txt").write_text("not audio, not listed")
    manifest = convert(
        str(tmp_path / "in"), str(tmp_path / "out"), ConvertConfig(validation_fraction=0), progress=False
    )
    skipped = {os.path.basename(item["source"]): item["reason"] for item in manifest["skipped"]}
    kept = {s["song_id"] for s in manifest["songs"]}
    assert kept == {"rock/good.mp3", "rock/six_channels_96k.wav", "rock/eight_bit.wav", "rock/truncated.mp3"} or (
        kept == {"rock/good.mp3", "rock/six_channels_96k.wav", "rock/eight_bit.wav"} and "truncated.mp3" in skipped
    )
    assert set(skipped) >= {"empty.mp3", "text.mp3", "silent.wav"}
    assert "silent" in skipped["silent.wav"]
    assert all(reason for reason in skipped.values())
    # the 6-channel 96 kHz file came out as 3 s of mono 16 kHz
    six = next(s for s in manifest["songs"] if s["song_id"].endswith("six_channels_96k.wav"))
    assert abs(six["samples"] - 48000) <= 1


def test_silent_songs_can_be_kept_and_flagged(tmp_path):
    (tmp_path / "in").mkdir()
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1", str(tmp_path / "in" / "quiet.wav"))
    manifest = convert(
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        ConvertConfig(drop_silent=False, validation_fraction=0),
        progress=False,
    )
    assert manifest["songs"][0]["silent"] is True and not manifest["skipped"]


def test_long_file_is_streamed_in_two_passes(tmp_path):
    (tmp_path / "in").mkdir()
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=5", "-ar", "44100", str(tmp_path / "in" / "long.flac"))
    streamed = convert(
        str(tmp_path / "in"),
        str(tmp_path / "s"),
        ConvertConfig(max_in_memory_seconds=1, validation_fraction=0),
        progress=False,
    )
    whole = convert(str(tmp_path / "in"), str(tmp_path / "w"), ConvertConfig(validation_fraction=0), progress=False)
    assert streamed["songs"][0]["samples"] == whole["songs"][0]["samples"] == 80000
    a = np.frombuffer(open(tmp_path / "s" / streamed["splits"]["train"]["shards"][0]["file"], "rb").read(), np.uint8)
    b = np.frombuffer(open(tmp_path / "w" / whole["splits"]["train"]["shards"][0]["file"], "rb").read(), np.uint8)
    assert a.shape == b.shape and np.mean(a != b) < 0.01  # same normalisation up to rounding


def test_empty_input_folder_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        convert(str(tmp_path / "in"), str(tmp_path / "out"), progress=False)


def test_mu_law_table_equals_audio_mu_law_encode_bit_for_bit():
    from waveforms.audio import MuLawTable

    table = MuLawTable.get()
    rng = np.random.default_rng(7)
    ordered = np.arange(-(2**20), 2**20, dtype=np.int64)  # the 2 Mi float32 closest to 0 (subnormal), both signs
    tiny = np.where(ordered < 0, (-ordered) | 0x80000000, ordered).astype(np.uint32).view(np.float32)
    grid = np.linspace(-1, 1, 2_000_001, dtype=np.float32)
    # the float32 neighbourhood of every code boundary, where a table could be off by one
    boundaries = table.boundary[np.isfinite(table.boundary)] / np.float32(MuLawTable.SCALE)  # (255,) in [-1, 1]
    steps = np.arange(-300, 301, dtype=np.int32)
    around = (boundaries.view(np.int32)[:, None] + steps[None, :]).ravel().view(np.float32)  # +-300 ulps of each
    for x in (tiny, grid, around, np.float32([-1.0, -0.5, 0.0, 0.5, 1.0])):
        assert np.array_equal(table.encode(x, np.float32(1.0)), audio.mu_law_encode(x))
    # songs of any loudness: the gain audio.peak_normalize would apply, then the codes it would give
    for peak in (1.0, 0.891, 0.3, 1e-3, 2e-8):
        x = np.clip(rng.standard_normal(200_000).astype(np.float32) * peak / 3, -peak, peak)
        x[rng.integers(0, x.size)] = peak
        assert np.array_equal(
            table.encode(x, np.float32(10 ** (-1 / 20) / float(np.max(np.abs(x))))),
            audio.mu_law_encode(audio.peak_normalize(x)),
        )


def test_songs_longer_than_the_memory_budget_give_the_same_bytes(tmp_path):
    """Past max_in_memory_seconds the song is decoded a second time instead of held: same records, byte for byte."""
    (tmp_path / "in").mkdir()
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=3", "-ar", "44100", str(tmp_path / "in" / "a.mp3"))
    config = ConvertConfig(validation_fraction=0, segment_seconds=1.0)
    held = convert(str(tmp_path / "in"), str(tmp_path / "held"), config, progress=False)
    import dataclasses

    budget = dataclasses.replace(config, max_in_memory_seconds=0.5)  # smaller than one 1 Mi-sample decode block too
    twice = convert(str(tmp_path / "in"), str(tmp_path / "twice"), budget, progress=False)
    assert held["songs"] == twice["songs"] and held["songs"][0]["samples"] >= 47000
    assert _tree_digest(tmp_path / "held") == _tree_digest(tmp_path / "twice")


def test_workers_never_run_far_ahead_of_the_writer():
    """Results are consumed in order; a slow first song must not let the pool decode (and hold) the whole listing."""
    import concurrent.futures
    import threading
    import time

    from waveforms.convert import _ordered_map

    started, lock = [], threading.Lock()

    def work(item):
        with lock:
            started.append(item)
        if item == 0:
            time.sleep(0.3)
        return item

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = _ordered_map(pool, work, list(range(50)), ahead=4)
        assert next(results) == 0
        assert len(started) <= 6  # ahead + the one being consumed + one in flight
        assert list(results) == list(range(1, 50))
