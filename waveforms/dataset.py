"""tf.data input from a manifest: shards -> records -> random windows with next-sample targets -> batches.

    x = codes[t0 : t0 + L]          (B, L) int32   the model sees samples up to t
    y = codes[t0 + 1 : t0 + L + 1]  (B, L) int32   and predicts sample t + 1

The seed project trained on unshifted targets, and its model learned to copy its input.

Local shards are read by TFRecordDataset. Shards in object storage (s3:// or minio://) are streamed by the minio client
(storage.open_read: one 1 MiB buffer per open shard, resumed Range reads) and framed by records.iter_records, which
checks both CRCs of every record; so training starts after the first few records arrive, memory is bounded by
cycle_length x (buffer + record) plus the shuffle buffer, and nothing is written to local disk. tensorflow-io's s3://
filesystem is deliberately not used (measured with tensorflow-io 0.37.1: reads past 512 KiB come back corrupt from
SeaweedFS, which ignores Range on HEAD, and a process that used s3:// aborts at exit).

TensorFlow is imported inside functions so the CLI does not pay for it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np

from waveforms import records, storage
from waveforms.manifest import (
    ManifestError,
    check_first_record,
    check_shards,
    iter_segments,
    iter_shard_records,
    load_manifest,
    song_records,
    split_entry,
)

log = logging.getLogger(__name__)

TFRECORD_BUFFER = 1024 * 1024  # read buffer per local shard


@dataclass(frozen=True)
class WindowCount:
    """What one pass over a split yields for a window length, computed from the manifest alone."""

    records: int  # records in the split (after the genre filter)
    short_records: int  # skipped: fewer than window_length + 1 samples
    windows: int  # training windows per pass: sum over usable records of (samples - 1) // window_length


def genre_ids(manifest: dict, genres: list[str] | None) -> list[int] | None:
    """Genre names -> ids (index in manifest["genres"]); None means all genres."""
    if genres is None:
        return None
    unknown = [name for name in genres if name not in manifest["genres"]]
    if unknown:
        raise ManifestError(f"unknown genres {unknown}; the manifest has {manifest['genres']}")
    return [manifest["genres"].index(name) for name in genres]


def count_windows(manifest: dict, split: str, window_length: int, genres: list[str] | None = None) -> WindowCount:
    """Records, short records and windows of a split, from the songs table (songs are cut into segment_samples)."""
    wanted = set(genres) if genres is not None else None
    count = WindowCount(0, 0, 0)
    for song in manifest.get("songs", []):
        if song.get("split") != split or (wanted is not None and song.get("genre") not in wanted):
            continue
        for _, length in song_records(manifest, song):
            usable = length >= window_length + 1
            count = WindowCount(
                count.records + 1,
                count.short_records + (not usable),
                count.windows + ((length - 1) // window_length if usable else 0),
            )
    return count


# ---------------------------------------------------------------------------------------------------- record streams


def _remote_records(uri: bytes, expected_records: int):
    """Generator for tf.data: the verified records of one shard in object storage, streamed."""
    yield from iter_shard_records(uri.decode(), int(expected_records) if expected_records >= 0 else None)


def record_dataset(
    uris: list[str],
    *,
    cycle_length: int = 4,
    shuffle_files: bool = False,
    seed: int | None = None,
    repeat: bool = False,
    expected_records: list[int | None] | None = None,
):
    """Serialized records of many shards, interleaved (read in parallel, order deterministic for a seed). Shards in
    object storage are checked against `expected_records` (the manifest's counts) as they are streamed."""
    import tensorflow as tf

    if not uris:
        raise ManifestError("no shards to read")
    remote = [storage.is_remote(uri) for uri in uris]
    if any(remote) and not all(remote):
        raise ManifestError(f"shards mix local and object storage: {uris[:3]}...")
    counts = [-1 if n is None else int(n) for n in (expected_records or [None] * len(uris))]  # -1: unknown
    files = tf.data.Dataset.from_tensor_slices((uris, tf.constant(counts, tf.int64)))
    if shuffle_files:
        files = files.shuffle(len(uris), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    if all(remote):

        def read(uri, count):
            return tf.data.Dataset.from_generator(
                _remote_records, args=(uri, count), output_signature=tf.TensorSpec((), tf.string)
            )
    else:

        def read(uri, count):
            return tf.data.TFRecordDataset(uri, buffer_size=TFRECORD_BUFFER)  # checks both CRCs of every record

    cycle = max(1, min(cycle_length, len(uris)))
    return files.interleave(read, cycle_length=cycle, block_length=1, num_parallel_calls=cycle, deterministic=True)


def _codes_and_genre(serialized):
    features = records.parse_example(serialized)
    return features["audio"], features["genre_id"]  # (samples,) uint8, () int64


SILENCE_DBFS = -60.0  # samples quieter than this are silence to shorten_silences (convert's silent-song threshold too)


def silence_codes(quantization_channels: int = 256) -> tuple[int, int]:
    """(lowest, highest) mu-law code whose amplitude is below SILENCE_DBFS: 123..132 of 256 (mu-law has no zero level:
    the encoder maps 0.0 to 128, and a decay that dithers around zero wanders over these codes)."""
    from waveforms.audio import mu_law_decode

    quiet = np.flatnonzero(np.abs(mu_law_decode(np.arange(quantization_channels))) < 10 ** (SILENCE_DBFS / 20))
    return int(quiet[0]), int(quiet[-1])


def shorten_silences(codes, max_run: int, lead_in):
    """tf.data map function: codes (n,) uint8 with every run of silence (samples below SILENCE_DBFS) cut to max_run
    samples; with lead_in (a scalar bool: the record starts its song) the song then starts out of max_run samples of
    silence: its own silent ending when it has one (the quiet dither of a decay, as the model will make it), else the
    code of 0.0.

    Why: a WaveNet sees only its receptive field. Trained on notes that end in long silent tails and start at the very
    first sample of their record, it only ever sees a receptive field of silence followed by more silence, learns that
    silence is absorbing, and its continuations die into silence for good. With runs capped a little above the
    receptive field and songs starting out of silence, every receptive field of silence it sees is soon followed by
    sound, as in a collection played from one song to the next."""
    import tensorflow as tf

    lowest, highest = silence_codes()

    def silent(values):
        return tf.logical_and(values >= lowest, values <= highest)

    def shorten(values):
        quiet = silent(values)  # (n,)
        index = tf.range(tf.size(values, out_type=tf.int64), dtype=tf.int64)  # (n,)
        run = tf.cumsum(
            tf.cast(tf.logical_not(quiet), tf.int64)
        )  # (n,) a sound sample opens run k, its silence follows
        run_start = tf.math.unsorted_segment_min(index, run, num_segments=run[-1] + 1)  # (runs,) first index of each
        position = index - tf.gather(run_start, run) + tf.cast(tf.equal(run, 0), tf.int64)  # 1.. within a silent run
        return tf.boolean_mask(values, tf.logical_or(tf.logical_not(quiet), position <= max_run))

    codes = shorten(codes)
    ending = codes[-max_run:]
    zero = tf.fill([max_run], tf.constant((lowest + highest + 1) // 2, tf.uint8))  # the code of 0.0
    lead = tf.cond(tf.logical_and(tf.size(ending) == max_run, tf.reduce_all(silent(ending))), lambda: ending,
                   lambda: zero)  # fmt: skip
    return tf.cond(lead_in, lambda: shorten(tf.concat([lead, codes], 0)), lambda: codes)


def _shortened_if_long_enough(codes, max_silence: int, lead_in, window_length: int):
    """shorten_silences, unless that leaves the record too short for a window: then the record as it is (records that
    are mostly silence keep their windows instead of starving the input pipeline)."""
    import tensorflow as tf

    shortened = shorten_silences(codes, max_silence, lead_in)
    return tf.cond(tf.size(shortened) >= window_length + 1, lambda: shortened, lambda: codes)


def _codes_genre_and_song_start(serialized):
    features = records.parse_example(serialized)
    return features["audio"], features["genre_id"], features["offset"] == 0  # (samples,) uint8, () int64, () bool


# ------------------------------------------------------------------------------------------------------------ windows


def _check_sizes(window_length: int, batch_size: int) -> None:
    if window_length < 1 or batch_size < 1:
        raise ValueError(f"window_length and batch_size must be >= 1, got {window_length} and {batch_size}")


def _usable(manifest: dict, manifest_uri: str, split: str, window_length: int, genres: list[str] | None) -> None:
    """Log the short records; refuse a split with no window at all (a repeated empty dataset would hang training)."""
    count = count_windows(manifest, split, window_length, genres)
    if not manifest.get("songs"):
        return  # a hand-made manifest without a songs table: nothing to check against
    if count.short_records:
        log.info(
            "%s [%s]: skipping %d of %d records shorter than window_length + 1 = %d samples",
            manifest_uri,
            split,
            count.short_records,
            count.records,
            window_length + 1,
        )
    if count.windows == 0:
        raise ManifestError(
            f"{manifest_uri}: split {split!r}{' genres ' + str(genres) if genres else ''} has no "
            f"record of at least window_length + 1 = {window_length + 1} samples "
            f"({count.records} records, {count.short_records} too short)"
        )


def _split_inputs_targets(windows, genre, window_length: int, with_genre: bool):
    import tensorflow as tf

    windows = tf.cast(windows, tf.int32)  # (B, L + 1)
    x, y = windows[:, :window_length], windows[:, 1:]  # (B, L), (B, L): y[t] = x[t + 1]
    return ((x, tf.cast(genre, tf.int32)), y) if with_genre else (x, y)  # genre (B,)


def _records_of(
    manifest_uri: str, split: str, window_length: int, genres, worker_index: int, num_workers: int, **reader
):
    manifest = load_manifest(manifest_uri)
    wanted = genre_ids(manifest, genres)
    _usable(manifest, manifest_uri, split, window_length, genres)
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, num_workers={num_workers}), got {worker_index}")
    uris = check_shards(manifest, manifest_uri, split)
    counts = [entry.get("records") for entry in split_entry(manifest, manifest_uri, split)["shards"]]
    check_first_record(manifest, manifest_uri, uris)
    record_shard = num_workers > 1 and len(uris) < num_workers  # too few files: every worker skips the others' records
    if num_workers > 1 and not record_shard:
        uris, counts = uris[worker_index::num_workers], counts[worker_index::num_workers]
    serialized = record_dataset(uris, expected_records=counts, **reader)
    if record_shard:
        serialized = serialized.shard(num_workers, worker_index)
    return serialized, wanted


def _keep(wanted: list[int] | None, window_length: int):
    import tensorflow as tf

    def keep(codes, genre):
        long_enough = tf.size(codes) >= window_length + 1
        if wanted is None:
            return long_enough
        return tf.logical_and(long_enough, tf.reduce_any(tf.equal(genre, tf.constant(wanted, tf.int64))))

    return keep


def make_dataset(
    manifest_uri: str,
    split: str = "train",
    *,
    window_length: int,
    batch_size: int,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    repeat: bool = True,
    genres: list[str] | None = None,
    with_genre: bool = False,
    cycle_length: int = 4,
    worker_index: int = 0,
    num_workers: int = 1,
    max_silence: int | None = None,
):
    """Training batches: (x, y) or ((x, genre_id), y); x, y int32 (batch_size, window_length), genre_id int32 (B,).

    Each record of n samples gives (n - 1) // window_length windows at independent random offsets, so one pass reads
    about as many samples as it yields. With num_workers > 1 each worker reads every num_workers-th shard. With
    max_silence, records first go through shorten_silences (runs of digital silence cut to max_silence samples, songs
    led in by as much silence).
    """
    import tensorflow as tf

    _check_sizes(window_length, batch_size)
    serialized, wanted = _records_of(
        manifest_uri,
        split,
        window_length,
        genres,
        worker_index,
        num_workers,
        cycle_length=cycle_length,
        shuffle_files=True,
        seed=seed,
        repeat=repeat,
    )
    length = window_length

    def random_windows(codes, genre, randomness):
        n = tf.size(codes, out_type=tf.int64)
        count = (n - 1) // length
        t0 = tf.random.stateless_uniform(
            [count], seed=tf.stack([randomness, n]), minval=0, maxval=n - length, dtype=tf.int64
        )  # (count,) in [0, n - L - 1]
        positions = t0[:, None] + tf.range(length + 1, dtype=tf.int64)[None, :]  # (count, L + 1)
        return tf.gather(codes, positions), tf.fill([count], genre)  # (count, L + 1) uint8, (count,) int64

    # a seeded random stream zipped in keeps the offsets reproducible for a seed, without stateful random ops
    if max_silence is None:
        codes_and_genres = serialized.map(_codes_and_genre, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        codes_and_genres = (
            serialized.map(_codes_genre_and_song_start, num_parallel_calls=tf.data.AUTOTUNE)
            .filter(lambda codes, genre, _start: tf.size(codes) > 0)
            .map(
                lambda codes, genre, start: (_shortened_if_long_enough(codes, max_silence, start, length), genre),
                num_parallel_calls=tf.data.AUTOTUNE,
            )  # fmt: skip
        )
    windows = tf.data.Dataset.zip((codes_and_genres.filter(_keep(wanted, length)), tf.data.Dataset.random(seed=seed)))
    windows = windows.map(
        lambda codes_genre, randomness: random_windows(*codes_genre, randomness), num_parallel_calls=tf.data.AUTOTUNE
    ).unbatch()
    if shuffle_buffer > 1:
        windows = windows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return (
        windows.batch(batch_size, drop_remainder=True)
        .map(lambda w, g: _split_inputs_targets(w, g, length, with_genre), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


@dataclass(frozen=True)
class EvaluationSet:
    """A fixed sample of held-out windows: the same on every evaluation, every resume and every training seed."""

    windows: np.ndarray  # (N, window_length + 1) uint8 codes: x = windows[:, :-1] predicts y = windows[:, 1:]
    genre_ids: np.ndarray  # (N,) int32
    song_ids: tuple[str, ...]  # (N,) the held-out song of each window
    songs: int  # held-out songs represented (all that have a usable record, unless there are more than N)
    samples: int  # samples of those songs' usable records: what the windows stand for

    def mean_and_standard_error(self, per_window: np.ndarray) -> tuple[float, float]:
        """The mean of per-window values and its standard error for this stratified sample: windows are allocated to
        songs in proportion to their length, so only the variation within songs adds to the error (songs with one
        window borrow the pooled within-song variance; with no song of two windows, the plain per-window variance)."""
        values = np.asarray(per_window, dtype=np.float64)
        if values.size < 2:
            return float(values.mean()), 0.0
        songs = np.array(self.song_ids)
        deviations, sizes = [], []
        for song in dict.fromkeys(self.song_ids):
            mine = values[songs == song]
            sizes.append(mine.size)
            deviations.append(((mine - mine.mean()) ** 2).sum())
        sizes = np.array(sizes)
        repeated = sizes >= 2
        if repeated.any():
            pooled = float(np.sum(np.array(deviations)[repeated]) / np.sum(sizes[repeated] - 1))
        else:
            pooled = float(values.var(ddof=1))
        return float(values.mean()), float(np.sqrt(pooled * values.size) / values.size)

    def batches(self, batch_size: int, window_length: int):
        """(x, y, genre_id, valid) NumPy batches of exactly batch_size rows: the last is padded, `valid` rows count."""
        for start in range(0, len(self.windows), batch_size):
            rows = self.windows[start : start + batch_size].astype(np.int32)
            genre = self.genre_ids[start : start + batch_size]
            valid = len(rows)
            if valid < batch_size:  # one batch shape: one compiled evaluation step
                rows = np.concatenate([rows, np.repeat(rows[-1:], batch_size - valid, axis=0)])
                genre = np.concatenate([genre, np.repeat(genre[-1:], batch_size - valid)])
            yield rows[:, :window_length], rows[:, 1:], genre, valid


def _stable_seed(seed: int, text: str) -> list[int]:
    return [seed, int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")]


def plan_evaluation(manifest: dict, window_length: int, count: int, *, seed: int = 0, split: str = "validation",
                    genres: list[str] | None = None) -> dict[tuple[str, int], list[int]]:  # fmt: skip
    """Where the evaluation windows start: {(song_id, record offset): [window starts within the record]}.

    Every held-out song with a usable record (at least window_length + 1 samples) gets windows in proportion to its
    usable length, at least one each; within a song the windows are evenly spaced over its whole length with a seeded
    random phase (systematic sampling), so the sample spreads over every song and over the whole of each. When there are
    more songs than `count`, a seeded choice of `count` songs gets one window each. Computed from the manifest alone.
    """
    if count < 1 or window_length < 1:
        raise ValueError(f"evaluation needs count >= 1 and window_length >= 1, got {count} and {window_length}")
    wanted = set(genres) if genres is not None else None
    songs = []  # (song_id, [(offset, usable starts)])
    for song in sorted(manifest.get("songs", []), key=lambda s: s["song_id"]):
        if song.get("split") != split or (wanted is not None and song.get("genre") not in wanted):
            continue
        usable = [(offset, n - window_length) for offset, n in song_records(manifest, song) if n >= window_length + 1]
        if usable:
            songs.append((song["song_id"], usable))
    if not songs:
        return {}
    starts_per_song = np.array([sum(starts for _, starts in usable) for _, usable in songs], dtype=np.float64)
    if len(songs) >= count:
        chosen = np.sort(np.random.default_rng(seed).choice(len(songs), size=count, replace=False))
        allocation = np.zeros(len(songs), np.int64)
        allocation[chosen] = 1
    else:  # one each, the rest in proportion to usable length (largest remainder)
        share = (count - len(songs)) * starts_per_song / starts_per_song.sum()
        allocation = 1 + np.floor(share).astype(np.int64)
        remainder = count - int(allocation.sum())
        allocation[np.argsort(-(share - np.floor(share)), kind="stable")[:remainder]] += 1
    plan: dict[tuple[str, int], list[int]] = {}
    for (song_id, usable), k, total in zip(songs, allocation, starts_per_song, strict=True):
        if not k:
            continue
        phase = np.random.default_rng(_stable_seed(seed, song_id)).random()
        for position in ((np.arange(k) + phase) * total / k).astype(np.int64):  # in [0, total)
            for offset, starts in usable:  # the record holding this start position
                if position < starts:
                    plan.setdefault((song_id, offset), []).append(int(position))
                    break
                position -= starts
    return plan


def evaluation_windows(manifest_uri: str, window_length: int, count: int, *, seed: int = 0,
                       split: str = "validation", genres: list[str] | None = None) -> EvaluationSet:  # fmt: skip
    """The planned evaluation windows (plan_evaluation) read from the split's shards; raises ManifestError when the
    split has no record long enough. Reads the split's records once, without TensorFlow."""
    manifest = load_manifest(manifest_uri)
    plan = plan_evaluation(manifest, window_length, count, seed=seed, split=split, genres=genres)
    if not plan:
        raise ManifestError(
            f"{manifest_uri}: no {split} song has a record of at least window_length + 1 = {window_length + 1} samples"
        )
    found: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
    for segment in iter_segments(manifest, manifest_uri, split):
        key = (segment.song_id, segment.offset)
        if key in plan:
            codes = np.frombuffer(segment.audio, dtype=np.uint8)
            found[key] = (np.stack([codes[s : s + window_length + 1] for s in plan[key]]), segment.genre_id)
            if len(found) == len(plan):
                break
    missing = sorted(set(plan) - set(found))
    if missing:
        song_id, offset = missing[0]
        raise ManifestError(f"{manifest_uri}: the {split} shards lack record {song_id!r} at offset {offset} "
                            f"that the manifest lists ({len(missing)} records missing)")  # fmt: skip
    keys = sorted(plan)
    windows = np.concatenate([found[key][0] for key in keys])  # (N, L + 1)
    genre_ids = np.concatenate([np.full(len(plan[key]), found[key][1], np.int32) for key in keys])
    song_ids = tuple(song_id for key in keys for song_id in [key[0]] * len(plan[key]))
    held_out = {song["song_id"]: song for song in manifest["songs"] if song.get("split") == split}
    represented = sorted({key[0] for key in keys})
    usable_samples = sum(n for song_id in represented for _, n in song_records(manifest, held_out[song_id])
                         if n >= window_length + 1)  # fmt: skip
    return EvaluationSet(windows, genre_ids, song_ids, len(represented), usable_samples)
