"""dataset.py: windows with next-sample targets, manifests, and streaming from SeaweedFS with integrity checks."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from waveforms import dataset, records, storage
from waveforms.manifest import ManifestError, load_manifest, shard_uris

SEGMENT = 4000  # samples per record in these tests


def write_dataset(root, songs: dict[str, tuple[str, np.ndarray]], *, shards: int = 2, split_of=None) -> str:
    """Write songs {song_id: (genre, codes uint8)} as TFRecord shards + manifest.json the way convert does."""
    os.makedirs(root, exist_ok=True)
    genres = sorted({genre for genre, _ in songs.values()})
    split_of = split_of or (lambda song_id: "train")
    manifest = {
        "format": records.FORMAT,
        "sample_rate": 16000,
        "encoding": records.ENCODING,
        "segment_samples": SEGMENT,
        "genres": genres,
        "splits": {},
        "songs": [],
        "skipped": [],
        "totals": {},
    }
    by_split = collections.defaultdict(list)
    for song_id, (genre, codes) in songs.items():
        split = split_of(song_id)
        manifest["songs"].append({"song_id": song_id, "genre": genre, "split": split, "samples": len(codes)})
        for offset in range(0, len(codes), SEGMENT):
            by_split[split].append(
                records.Segment(
                    codes[offset : offset + SEGMENT].tobytes(), song_id, genre, genres.index(genre), 16000, offset
                )
            )
    for split in ("train", "validation"):
        segments, entries = by_split[split], []
        for index in range(shards):
            name = f"{split}-{index:05d}-of-{shards:05d}.tfrecord"
            mine = segments[index::shards]
            with open(os.path.join(root, name), "wb") as handle:
                for segment in mine:
                    handle.write(records.frame(records.encode_example(segment)))
            entries.append({"file": name, "records": len(mine), "samples": sum(len(s.audio) for s in mine)})
        manifest["splits"][split] = {
            "shards": entries,
            "records": len(segments),
            "samples": sum(len(s.audio) for s in segments),
        }
    with open(os.path.join(root, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)
    return os.path.join(root, "manifest.json")


def random_songs(seed: int, lengths: dict[str, tuple[str, int]]) -> dict[str, tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {song_id: (genre, rng.integers(0, 256, n, dtype=np.uint8)) for song_id, (genre, n) in lengths.items()}


def find_window(songs, x_row: np.ndarray) -> tuple[str, int]:
    """(song_id, t0) where x_row occurs in the source audio; random codes make the match unique."""
    needle = x_row.astype(np.uint8).tobytes()
    hits = [
        (song_id, codes.tobytes().find(needle))
        for song_id, (_, codes) in songs.items()
        if codes.tobytes().find(needle) >= 0
    ]
    assert len(hits) == 1, f"window found {len(hits)} times"
    return hits[0]


def batches(ds, limit=None):
    out = []
    for batch in ds:
        out.append(batch)
        if limit is not None and len(out) >= limit:
            break
    return out


@pytest.fixture(scope="module")
def songs():
    return random_songs(
        7,
        {
            "rock/a": ("rock", 10_000),
            "rock/b": ("rock", 8_000),
            "jazz/c": ("jazz", 9_001),
            "jazz/d": ("jazz", 4_100),
            "bell/e": ("bell", 700),
        },
    )


@pytest.fixture(scope="module")
def local_manifest(songs, tmp_path_factory):
    return write_dataset(
        tmp_path_factory.mktemp("data"),
        songs,
        split_of=lambda song_id: "validation" if song_id == "jazz/d" else "train",
    )


# -------------------------------------------------------------------------------------------------------- manifest


def test_manifest_and_relative_shard_uris(local_manifest, tmp_path):
    manifest = load_manifest(local_manifest)
    folder = os.path.dirname(local_manifest)
    assert shard_uris(manifest, local_manifest, "train") == [
        os.path.join(folder, "train-00000-of-00002.tfrecord"),
        os.path.join(folder, "train-00001-of-00002.tfrecord"),
    ]
    assert (
        shard_uris(manifest, "s3://b/data/v1/manifest.json", "validation")[0]
        == "s3://b/data/v1/validation-00000-of-00002.tfrecord"
    )
    with pytest.raises(ManifestError, match="no split 'test'"):
        shard_uris(manifest, local_manifest, "test")
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(str(tmp_path / "manifest.json"))
    (tmp_path / "bad.json").write_text('{"format": "something-else"}')
    with pytest.raises(ManifestError, match="something-else"):
        load_manifest(str(tmp_path / "bad.json"))
    with pytest.raises(ManifestError, match=r"unknown genres \['polka'\]"):
        dataset.genre_ids(manifest, ["polka"])


def test_count_windows_from_the_songs_table(local_manifest):
    manifest = load_manifest(local_manifest)
    # train records: a 4000,4000,2000; b 4000,4000; c 4000,4000,1001; e 700  -> 9 records
    count = dataset.count_windows(manifest, "train", window_length=1000)
    # windows: six 4000-sample records give 3 each, the 2000 and the 1001 one each, the 700 none
    assert count == dataset.WindowCount(records=9, short_records=1, windows=6 * 3 + 1 + 1)
    assert dataset.count_windows(manifest, "train", 2000).short_records == 3  # 2000, 1001 and 700 < 2001
    assert dataset.count_windows(manifest, "train", 1000, genres=["jazz"]).windows == 3 + 3 + 1


# --------------------------------------------------------------------------------------------------------- windows


def test_targets_are_the_next_sample(tmp_path):
    ramp = {
        "ramp/a": ("tone", (np.arange(9000) * 1 + 3).astype(np.uint8)),  # codes[t] = (t + 3) mod 256
        "ramp/b": ("tone", (np.arange(6000) + 100).astype(np.uint8)),
    }
    manifest = write_dataset(tmp_path, ramp)
    ds = dataset.make_dataset(manifest, window_length=300, batch_size=4, seed=1, repeat=False)
    seen = 0
    for x, y in ds:
        assert x.dtype.name == "int32" and y.dtype.name == "int32" and x.shape == (4, 300) == y.shape
        np.testing.assert_array_equal(y.numpy(), (x.numpy() + 1) % 256)  # shifted by exactly one sample
        seen += 1
    assert seen > 0


def test_random_windows_come_from_the_source_with_shifted_targets(songs, local_manifest):
    window = 1000
    ds = dataset.make_dataset(local_manifest, window_length=window, batch_size=8, seed=3, repeat=False)
    offsets, total = set(), 0
    for x, y in ds:
        for x_row, y_row in zip(x.numpy(), y.numpy(), strict=True):
            song_id, t0 = find_window(songs, x_row)
            codes = songs[song_id][1]
            np.testing.assert_array_equal(y_row, codes[t0 + 1 : t0 + window + 1])
            assert song_id != "jazz/d" and song_id != "bell/e"  # validation song, and a record too short
            assert t0 // SEGMENT == (t0 + window) // SEGMENT  # never straddles two records
            offsets.add((song_id, t0))
            total += 1
    manifest = load_manifest(local_manifest)
    expected = dataset.count_windows(manifest, "train", window).windows
    assert total == expected // 8 * 8  # one pass, drop_remainder
    assert len(offsets) > total * 0.9  # random offsets, not a fixed grid


def test_seed_reproduces_batches_and_repeat_keeps_going(local_manifest):
    def first(seed, n=6):
        ds = dataset.make_dataset(local_manifest, window_length=500, batch_size=4, seed=seed, shuffle_buffer=16)
        return np.concatenate([x.numpy() for x, _ in batches(ds, n)])

    one_pass = dataset.count_windows(load_manifest(local_manifest), "train", 500).windows
    np.testing.assert_array_equal(first(11), first(11))
    assert not np.array_equal(first(11), first(12))
    assert (
        len(batches(dataset.make_dataset(local_manifest, window_length=500, batch_size=4, seed=1), one_pass // 4 + 10))
        == one_pass // 4 + 10
    )  # repeat=True runs past one pass


def test_genre_filter_and_genre_ids(songs, local_manifest):
    manifest = load_manifest(local_manifest)
    rock = manifest["genres"].index("rock")
    ds = dataset.make_dataset(
        local_manifest, window_length=1000, batch_size=4, seed=5, repeat=False, genres=["rock"], with_genre=True
    )
    rows = 0
    for (x, genre), _ in ds:
        assert genre.dtype.name == "int32" and genre.shape == (4,)
        assert set(genre.numpy().tolist()) == {rock}
        for x_row in x.numpy():
            assert find_window(songs, x_row)[0].startswith("rock/")
            rows += 1
    assert rows == dataset.count_windows(manifest, "train", 1000, genres=["rock"]).windows // 4 * 4


def test_workers_read_disjoint_shards_that_cover_the_split(songs, local_manifest):
    seen = []
    for worker in range(2):
        ds = dataset.make_dataset(
            local_manifest, window_length=1000, batch_size=1, seed=2, repeat=False, worker_index=worker, num_workers=2
        )
        found = [find_window(songs, x[0]) for x, _ in ds.as_numpy_iterator()]
        seen.append({(song_id, t0 // SEGMENT) for song_id, t0 in found})  # the records this worker read
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == {
        ("rock/a", 0),
        ("rock/a", 1),
        ("rock/a", 2),
        ("rock/b", 0),
        ("rock/b", 1),
        ("jazz/c", 0),
        ("jazz/c", 1),
        ("jazz/c", 2),
    }
    with pytest.raises(ValueError, match="worker_index"):
        dataset.make_dataset(local_manifest, window_length=1000, batch_size=1, worker_index=2, num_workers=2)


def test_split_without_long_enough_records_is_refused(local_manifest):
    with pytest.raises(ManifestError, match="no record of at least window_length"):
        dataset.make_dataset(local_manifest, window_length=4000, batch_size=2)
    with pytest.raises(ManifestError, match="no record"):
        dataset.make_dataset(local_manifest, window_length=700, batch_size=2, genres=["bell"])


def test_evaluation_windows_cover_every_held_out_song_and_are_identical_every_time(songs, tmp_path):
    held_out = {"rock/b", "jazz/c", "jazz/d", "bell/e"}
    manifest_uri = write_dataset(tmp_path, songs, split_of=lambda s: "validation" if s in held_out else "train")
    window = 600

    first = dataset.evaluation_windows(manifest_uri, window, 12)
    again = dataset.evaluation_windows(manifest_uri, window, 12)  # a resume, another evaluation: the same windows
    np.testing.assert_array_equal(first.windows, again.windows)
    assert first.windows.shape == (12, window + 1) and first.windows.dtype == np.uint8
    # bell/e (700 samples) has a usable record; every held-out song is represented, train songs never
    assert set(first.song_ids) == held_out and first.songs == 4
    # in proportion to usable length: jazz/c (9,001 samples) gets more than jazz/d (4,100), each at least one
    count = collections.Counter(first.song_ids)
    assert count["jazz/c"] > count["jazz/d"] >= 1 and count["bell/e"] >= 1
    # each window is a real stretch of its song with next-sample targets, inside one record (segment of 4,000)
    for song_id, row in zip(first.song_ids, first.windows, strict=True):
        found, t0 = find_window({song_id: songs[song_id]}, row)
        assert found == song_id and t0 // SEGMENT == (t0 + window) // SEGMENT
    # spread over the whole song: jazz/c's windows start in each of its first two records
    starts = sorted(find_window({"jazz/c": songs["jazz/c"]}, row)[1]
                    for song_id, row in zip(first.song_ids, first.windows, strict=True) if song_id == "jazz/c")  # fmt: skip
    assert {start // SEGMENT for start in starts} >= {0, 1}
    # another seed draws other positions; padding keeps every batch the same shape
    assert not np.array_equal(dataset.evaluation_windows(manifest_uri, window, 12, seed=1).windows, first.windows)
    batches = list(first.batches(5, window))
    assert [valid for *_, valid in batches] == [5, 5, 2] and all(x.shape == (5, window) for x, *_ in batches)
    np.testing.assert_array_equal(batches[0][1], first.windows[:5, 1:])


def test_evaluation_with_more_songs_than_windows_takes_one_window_from_each_of_a_seeded_choice(songs, tmp_path):
    manifest_uri = write_dataset(tmp_path, songs, split_of=lambda s: "validation")
    chosen = dataset.evaluation_windows(manifest_uri, 600, 3)
    assert len(set(chosen.song_ids)) == 3 == len(chosen.song_ids)
    with pytest.raises(ManifestError, match="no validation song has a record"):
        dataset.evaluation_windows(manifest_uri, 5000, 3)


def test_corrupt_local_shard_is_an_error(songs, tmp_path):
    manifest = write_dataset(tmp_path, songs, shards=1)
    shard = tmp_path / "train-00000-of-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    import tensorflow as tf

    with pytest.raises(tf.errors.DataLossError):
        batches(dataset.make_dataset(manifest, window_length=100, batch_size=4, repeat=False))


# ----------------------------------------------------------------------------------------------- object storage


@pytest.fixture(scope="module")
def remote_dataset(songs, local_manifest, s3_server):
    """The local dataset uploaded to the session SeaweedFS; -> (s3 manifest URI, env)."""
    env = s3_server.env()
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    prefix = f"s3://{s3_server.bucket}/datasets/test-dataset"
    storage.sync_dir_up(os.path.dirname(local_manifest), prefix)
    yield f"{prefix}/manifest.json"
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_records_streamed_from_s3_equal_the_records_written(remote_dataset, local_manifest):
    manifest = load_manifest(remote_dataset)
    for split in ("train", "validation"):
        uris = shard_uris(manifest, remote_dataset, split)
        assert all(uri.startswith("s3://") for uri in uris)
        written = []
        for path in shard_uris(manifest, local_manifest, split):
            with open(path, "rb") as handle:
                written += [hashlib.sha256(record).hexdigest() for record in records.iter_records(handle)]
        streamed = [
            hashlib.sha256(record).hexdigest()
            for record in dataset.record_dataset(uris, cycle_length=1).as_numpy_iterator()
        ]
        assert streamed == written  # every record, in order, byte for byte
        interleaved = [hashlib.sha256(r).hexdigest() for r in dataset.record_dataset(uris).as_numpy_iterator()]
        assert collections.Counter(interleaved) == collections.Counter(written)


def test_s3_and_local_give_identical_batches_for_a_seed(remote_dataset, local_manifest):
    def take(manifest, n=12):
        ds = dataset.make_dataset(manifest, window_length=700, batch_size=4, seed=21, with_genre=True)
        return [(x.numpy(), genre.numpy(), y.numpy()) for (x, genre), y in batches(ds, n)]

    for remote, local in zip(take(remote_dataset), take(local_manifest), strict=True):
        for a, b in zip(remote, local, strict=True):
            np.testing.assert_array_equal(a, b)
    remote_eval = dataset.evaluation_windows(remote_dataset, 1000, 4).windows
    np.testing.assert_array_equal(remote_eval, dataset.evaluation_windows(local_manifest, 1000, 4).windows)


def test_s3_corruption_names_the_shard_and_record(s3_server, remote_dataset, tmp_path):
    """A flipped byte in the last record: the batches before it are delivered, then an error names shard and record."""
    rng = np.random.default_rng(9)
    long_song = {f"s/{i}": ("x", rng.integers(0, 256, SEGMENT, dtype=np.uint8)) for i in range(200)}
    local = write_dataset(tmp_path / "corrupt", long_song, shards=1)
    shard = tmp_path / "corrupt" / "train-00000-of-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[-50] ^= 0x01  # inside the last record's audio
    shard.write_bytes(bytes(data))
    prefix = f"s3://{s3_server.bucket}/datasets/corrupt"
    storage.sync_dir_up(os.path.dirname(local), prefix)
    ds = iter(
        dataset.make_dataset(
            f"{prefix}/manifest.json", window_length=1000, batch_size=2, shuffle_buffer=4, repeat=False
        )
    )
    next(ds)
    import tensorflow as tf

    with pytest.raises(tf.errors.OpError, match=r"train-00000-of-00001.tfrecord: data CRC mismatch at record 199"):
        for _ in ds:
            pass


def test_training_process_streaming_from_s3_exits_cleanly(s3_server, remote_dataset):
    """A fresh process that streams from object storage exits 0 (tensorflow-io's s3:// would abort with 134)."""
    script = textwrap.dedent(f"""
        from waveforms import dataset
        ds = dataset.make_dataset({remote_dataset!r}, window_length=500, batch_size=4, seed=0)
        for step, (x, y) in enumerate(ds.take(5)):
            assert (x.numpy()[:, 1:] == y.numpy()[:, :-1]).all()
        print("streamed", step + 1, "batches")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **s3_server.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "streamed 5 batches" in done.stdout


def test_shorten_silences_caps_silent_runs_and_leads_songs_in_out_of_silence():
    import tensorflow as tf

    lowest, highest = dataset.silence_codes()
    assert (lowest, highest) == (123, 132)  # |amplitude| < -60 dBFS after the mu-law round trip
    dither = [125, 131] * 6  # a decay dithering around zero is silence too
    codes = np.array([128] * 10 + [140, 150] + dither + [100] + [128] * 3, np.uint8)

    def shortened(values, lead_in):
        return dataset.shorten_silences(tf.constant(np.array(values, np.uint8)), 4, tf.constant(lead_in)).numpy()

    np.testing.assert_array_equal(shortened(codes, False), [128] * 4 + [140, 150] + dither[:4] + [100] + [128] * 3)
    # a song whose ending is not silent starts out of the code of 0.0 (its own leading silence is capped with it)
    np.testing.assert_array_equal(shortened(codes, True), shortened(codes, False))
    # a song ending in silence starts out of that silence, as the model will make it
    np.testing.assert_array_equal(shortened([140, 150] + dither, True), dither[-4:] + [140, 150] + dither[:4])
