"""Audio files -> mu-law TFRecord shards + manifest.json (`waveforms convert IN_URI OUT_URI`).

Pipeline per song: decode (ffmpeg, streamed) -> mono -> resample -> peak-normalise -> mu-law uint8 -> segments of
`segment_seconds` -> records. Songs are decoded by a thread pool (each decode is an ffmpeg subprocess, so threads use
every core; the Python share per song is small and mostly GIL-free NumPy) and written in listing order, so the same
input always gives byte-identical shards and manifest.

Speed (benchmarks/conversion.py, benchmarks/batching.py): ffmpeg's own work is nearly all of the cost, so the per-song
extras are kept small: one decode pass and no ffprobe (a probe costs a third of a 2-minute decode, mostly process
start-up), and mu-law from a table (`audio.MuLawTable`) instead of log1p, bit-identical to audio.mu_law_encode. Starting an
ffmpeg costs about as much CPU as decoding a 30-s mp3 clip (the FMA archives' format), so runs of small local files
share one process (`decode_batch` of them, `audio.decode_many`; the same bytes as one process per file); a file the
shared run cannot vouch for is decoded again on its own, so a bad one fails alone with its own reason.

Memory is flat in song length: a song longer than `max_in_memory_seconds` is decoded twice (peak, then encode) and its
codes go to a scratch file that the writer reads one record at a time; only the data profile's few windows of a song
are ever decoded back to float.

Scaling out: `shard_index`/`num_shards` give each pipeline task every num_shards-th song of the sorted listing; each task
writes its shards and a part manifest, and `manifest.merge_parts` joins the parts into `manifest.json` (static fan-out works on
kfp.local and on every KFP backend, unlike ParallelFor with fan-in). The train/validation split and the genre ids are
computed from the whole listing before partitioning, so they do not depend on the number of tasks.

manifest.json: its schema, checks, merge and publication are `waveforms/manifest.py`'s.

A conversion holds a lease on OUT_URI (storage.Lease: one per fan-out task, an exclusive one for a whole conversion or
a merge), so a second writer into the same dataset fails at once naming the first. Shards are uploaded as they fill
(local staging holds one open shard per split; SIGTERM removes it, the next run removes what a SIGKILL left), and a
journal under OUT_URI lists the shards and songs published so far: a rerun of the same conversion after a crash
converts only the rest (shards close at song boundaries, so no song is split between a kept and a lost shard).
Publication is atomic: shards are named by their content, manifest.json is written last in one atomic write, and only
then are shards no manifest lists removed. A conversion killed at any moment leaves the previous manifest describing
the previous shards (still present); readers check each shard's size and record count at open
(`manifest.check_shards`) and its sha256 on `waveforms verify`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from waveforms import audio, audio_checks, limits, records, storage
from waveforms.manifest import (
    PROFILE_SAMPLE,
    dumps,
    finish_totals,
    merge,
    new_manifest,
    part_name,
)

METADATA_FILES = ("index.jsonl", "metadata.jsonl")  # written by `ingest` (genre) and `synth` (family)


@dataclass(frozen=True)
class ConvertConfig:
    sample_rate: int = 16000  # Hz; 8000 also works
    segment_seconds: float = 30.0  # a song is cut into records of this length
    shard_megabytes: float = 64.0  # a shard is closed once it holds this much audio
    validation_fraction: float = 0.1  # share of the audio held out for validation, in whole songs (no leakage)
    silence_threshold_db: float = -60.0  # songs whose peak is below this are flagged silent
    drop_silent: bool = True
    min_seconds: float = 0.5  # shorter songs are skipped
    max_in_memory_seconds: float = 1800.0  # decoded audio held per song; longer songs are decoded twice
    workers: int = 2  # concurrent decodes (ffmpeg processes)
    decode_batch: int = 16  # small local files decoded per ffmpeg process (1: one process per file; same output)
    shard_index: int = 0
    num_shards: int = 1

    def validate(self) -> None:
        if self.sample_rate not in range(8000, 96001):
            raise ValueError(f"sample_rate must be 8000..96000 Hz, got {self.sample_rate}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        limits.check_range("--segment-seconds", self.segment_seconds, limits.MIN_SEGMENT_SECONDS,
                           limits.MAX_SEGMENT_SECONDS)  # fmt: skip
        limits.check_range("--shard-mb", self.shard_megabytes, 0, limits.MAX_SHARD_MB, low_open=True)
        limits.check_range("--workers", self.workers, 1, limits.MAX_WORKERS, integer=True)
        limits.check_range("decode_batch", self.decode_batch, 1, MAX_DECODE_BATCH, integer=True)
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, num_shards={self.num_shards}), got {self.shard_index}")

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))


@dataclass
class Song:
    song_id: str  # path relative to the input root, posix separators
    source: str  # URI of the input file
    genre: str
    split: str = "train"


@dataclass
class SongResult:
    song: Song
    codes: np.ndarray | None = None  # (samples,) mu-law codes of a song held in memory, or ...
    codes_file: str | None = None  # ... of a longer one, in a scratch file (see _decode_and_encode)
    samples: int = 0
    sha256: str = ""
    peak_db: float = -math.inf
    error: str | None = None
    profile: dict = field(default_factory=dict)  # audio_checks.profile_sample_of: the song's share of the data profile


# --- listing ---


def list_songs(in_uri: str, validation_fraction: float) -> list[Song]:
    """Every audio file under in_uri, sorted, with its genre and its split (decided here, for all tasks at once)."""
    files = storage.list_files(in_uri)
    genres_by_file = _read_genre_metadata(in_uri, files)
    songs = []
    for uri in files:
        relative = (
            uri[len(in_uri.rstrip("/")) + 1 :] if uri.startswith(in_uri.rstrip("/") + "/") else os.path.basename(uri)
        )
        if not relative.lower().endswith(audio.AUDIO_EXTENSIONS):
            continue
        parts = relative.split("/")
        genre = genres_by_file.get(relative) or (parts[0] if len(parts) > 1 else "unknown")
        songs.append(Song(song_id=relative, source=uri, genre=genre))
    hold_out(songs, validation_fraction)
    return songs


def hold_out(songs: list[Song], validation_fraction: float) -> None:
    """Mark whole songs (no leakage between splits) as validation until they hold about validation_fraction of the
    audio. Songs are taken in the order of a hash of their content (storage.content_key), so the choice is the same
    however the files are named or renamed; file size stands in for duration (unknown before decoding), and the split
    actually reached is recorded in the manifest. At least one song is held out when there are two or more, never all.
    """
    if validation_fraction <= 0 or len(songs) < 2:
        return
    keyed = []
    for song in songs:
        try:
            size, key = storage.content_key(song.source)
        except (OSError, storage.StorageError):  # unreadable: it fails as an item when converted, never here
            size, key = 0, hashlib.sha256(song.song_id.encode()).hexdigest()
        keyed.append((key, song.song_id, size, song))
    keyed.sort(key=lambda item: item[:2])
    target = validation_fraction * sum(size for _, _, size, _ in keyed)
    held = 0
    for count, (_, _, size, song) in enumerate(keyed[:-1]):
        # stop where adding the next song would overshoot the target by more than stopping undershoots it
        if count and held + size - target > target - held:
            break
        song.split = "validation"
        held += size


def _read_genre_metadata(in_uri: str, files: list[str]) -> dict[str, str]:
    genres: dict[str, str] = {}
    for name in METADATA_FILES:
        uri = storage.join(in_uri, name)
        if uri not in files:
            continue
        for line in storage.read_bytes(uri).decode().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            genre = entry.get("genre") or entry.get("family")
            if entry.get("file") and genre:
                genres[entry["file"]] = str(genre)
    return genres


# --- one song ---

DECODE_BLOCK_SAMPLES = 1 << 20  # 4 MiB of float32 per block read from ffmpeg
PEAK_DB = -1.0  # songs are normalised to this peak before mu-law, as audio.peak_normalize does


def convert_batch(songs: list[Song], config: ConvertConfig, scratch_dir: str) -> list[SongResult]:
    """Decode, normalise, mu-law encode and segment each song, the songs of a batch (see _batches) decoded by one
    ffmpeg process (audio.decode_many: bit-identical audio); errors become SongResult.error, never exceptions, so a bad
    song fails alone, naming its reason."""
    results = [SongResult(song) for song in songs]
    local: dict[int, tuple[str, bool]] = {}  # index -> (local path, downloaded here)
    try:
        for index, result in enumerate(results):
            with _item_errors(result):
                local[index] = (_local_path(result.song, scratch_dir), storage.is_remote(result.song.source))
                if local[index][1]:
                    storage.download_file(result.song.source, local[index][0])
                result.sha256 = _sha256_file(local[index][0])
        ready = [index for index in local if results[index].error is None]
        first_passes: list = [None] * len(ready)  # None: decoded (streamed) on its own by _decode_and_encode
        if len(ready) > 1:
            budget = int(config.max_in_memory_seconds * config.sample_rate)  # a batch holds no more than one song may
            try:
                first_passes = audio.decode_many([local[i][0] for i in ready], config.sample_rate, scratch_dir, budget)
            except Exception as error:  # e.g. no ffmpeg: every song of the batch fails with the reason, as one would
                first_passes = [error] * len(ready)
        for position, index in enumerate(ready):
            blocks = None if first_passes[position] is None else [first_passes[position]]
            first_passes[position] = None  # each decoded song is let go once it is encoded
            with _item_errors(results[index]):
                if blocks and isinstance(blocks[0], Exception):
                    raise blocks[0]
                _decode_and_encode(local[index][0], config, results[index], scratch_dir, blocks)
    finally:
        for path, downloaded in local.values():
            if downloaded and os.path.exists(path):
                os.remove(path)
    return results


@contextlib.contextmanager
def _item_errors(result: SongResult):
    """One bad item never stops the others: its exception becomes result.error (the manifest's skipped reason)."""
    try:
        yield
    except audio.AudioDecodeError as error:
        result.error = error.reason
    except storage.StorageError as error:
        result.error = f"storage: {error}"
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}"
    if result.error and result.codes_file:
        _remove_codes_file(result)


def _local_path(song: Song, scratch_dir: str) -> str:
    if not storage.is_remote(song.source):
        return song.source
    return os.path.join(
        scratch_dir, hashlib.sha1(song.source.encode()).hexdigest() + "_" + os.path.basename(song.song_id)
    )


def _decode_and_encode(
    path: str, config: ConvertConfig, result: SongResult, scratch_dir: str, first_pass: list | None = None
) -> None:
    """Mu-law codes of the peak-normalised song, from one streamed decode (or the blocks of first_pass): the blocks are
    held until the song proves longer than max_in_memory_seconds; past that only the peak is tracked and a second
    decode encodes into a scratch file (result.codes_file) read back one segment at a time when the records are
    written, so memory stays flat in song length without asking ffprobe for the duration first."""
    budget = config.max_in_memory_seconds * config.sample_rate
    held: list[np.ndarray] | None = []
    total, peak = 0, 0.0
    blocks = first_pass if first_pass is not None else audio.iter_decode(path, config.sample_rate, DECODE_BLOCK_SAMPLES)
    for block in blocks:  # (<= block samples,) in [-1, 1]
        if not block.size:
            continue
        high, low = float(block.max()), float(block.min())
        if not (math.isfinite(high) and math.isfinite(low)):
            raise audio.AudioDecodeError(path, "decoded audio contains NaN or infinity")
        peak = max(peak, high, -low)
        total += block.size
        if held is not None:
            held.append(block)
            if total > budget:
                held = None  # too long to hold: keep measuring the peak, encode in a second pass
    if first_pass is not None:
        first_pass.clear()  # the caller's list: from here the decoded audio is held only through `held`
    del blocks
    result.samples = total
    result.peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    if total < config.min_seconds * config.sample_rate:
        result.error = f"too short: {total / config.sample_rate:.2f} s < {config.min_seconds} s"
        return
    if config.drop_silent and result.peak_db < config.silence_threshold_db:
        result.error = f"silent: peak {result.peak_db:.1f} dBFS < {config.silence_threshold_db} dBFS"
        return
    table = audio.MuLawTable.get()
    gain = np.float32(10.0 ** (PEAK_DB / 20.0) / peak) if peak >= 1e-9 else None  # exactly audio.peak_normalize's
    if held is not None:
        result.codes = np.empty(total, dtype=np.uint8)  # (total,) one allocation: fresh pages cost more than encoding
        written = 0
        while held:
            block = held.pop(0)  # the float blocks are released as they are encoded
            _encode_block(table, block, gain, result.codes[written : written + block.size])
            written += block.size
        result.profile = audio_checks.profile_sample_of(result.codes, config.sample_rate)
        return
    result.codes_file = os.path.join(scratch_dir, hashlib.sha1(result.song.source.encode()).hexdigest() + ".codes")
    written = 0
    # silence (audio.peak_normalize gives zeros) needs no second decode: `total` codes of silence
    blocks = audio.iter_decode(path, config.sample_rate, DECODE_BLOCK_SAMPLES) if gain is not None else (
        np.zeros(min(DECODE_BLOCK_SAMPLES, total - start), np.float32) for start in range(0, total, DECODE_BLOCK_SAMPLES)
    )  # fmt: skip
    with open(result.codes_file, "wb") as codes_file:
        for block in blocks:
            if written + block.size > total:
                raise audio.AudioDecodeError(path, "the second decode of a long file gave more samples than the first")
            codes_file.write(_encode_block(table, block, gain, np.empty(block.size, np.uint8)))
            written += block.size
    result.samples = written
    # only the profile's few windows of the file are ever read into memory
    result.profile = audio_checks.profile_sample_of(np.memmap(result.codes_file, np.uint8, "r"), config.sample_rate)


def _encode_block(table: audio.MuLawTable, block: np.ndarray, gain: np.float32 | None, out: np.ndarray) -> np.ndarray:
    if gain is None:  # silence: audio.peak_normalize gives zeros, whose code is the middle one
        out[:] = table.silence_code
        return out
    return table.encode(block, gain, out=out)


def _song_segments(result: SongResult, segment_samples: int) -> Iterator[bytes]:
    """The song's mu-law codes in records of segment_samples (the last shorter), from memory or its codes file."""
    if result.codes_file is None:
        for start in range(0, result.codes.size, segment_samples):
            yield result.codes[start : start + segment_samples].tobytes()
        return
    with open(result.codes_file, "rb") as codes_file:
        while segment := codes_file.read(segment_samples):
            yield segment
    _remove_codes_file(result)


def _remove_codes_file(result: SongResult) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(result.codes_file)
    result.codes_file = None


def _sha256_file(path: str) -> str:
    """Also the check that the input is a regular file (not a FIFO, device or symlink loop) before ffmpeg opens it."""
    digest = hashlib.sha256()
    with storage.open_read(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- shards ---


class ShardWriter:
    """Writes one split's records into shards of about `shard_bytes` each, in a local staging folder; each shard is
    handed to `publish` (uploaded to OUT_URI, then removed here) as soon as it is full, so local disk holds at most one
    open shard per split whatever the dataset's size.

    A closed shard is named by its content (`train-00003-<sha256 prefix>.tfrecord`): a conversion into a folder that
    holds another dataset never overwrites a shard the old manifest lists, and the same input still gives the same
    names. Each entry carries what a reader checks: records and bytes at open, sha256 on `waveforms verify`.
    """

    def __init__(self, staging_dir: str, split: str, prefix: str, shard_bytes: int, publish=None):
        self.staging_dir, self.split, self.prefix, self.shard_bytes = staging_dir, split, prefix, shard_bytes
        self.publish = publish  # (local path, entry) -> None
        self.shards: list[dict] = []
        self.songs_done: list[dict] = []  # song entries whose records are all in closed (published) shards
        self.songs_open: list[dict] = []  # ... in the open shard
        self._file = None
        self._digest = None

    def write(self, segment: records.Segment) -> None:
        if self._file is None:
            self._file = open(os.path.join(self.staging_dir, f"{self.split}-open.tfrecord"), "wb")
            self._digest = hashlib.sha256()
            self.shards.append({"file": None, "records": 0, "samples": 0})
        framed = records.frame(records.encode_example(segment))
        self._file.write(framed)
        self._digest.update(framed)
        self.shards[-1]["records"] += 1
        self.shards[-1]["samples"] += len(segment.audio)

    def end_song(self, song: dict) -> None:
        """A song's records are all written; a full shard is closed only here, so no song spans a closed and an open
        shard and a resumed conversion can skip every song of the closed ones."""
        self.songs_open.append(song)
        if self._file is not None and self._file.tell() >= self.shard_bytes:
            self.close()

    def close(self) -> None:
        if self._file is None:
            return
        entry, digest = self.shards[-1], self._digest.hexdigest()
        entry["bytes"], entry["sha256"] = self._file.tell(), digest
        entry["file"] = f"{self.split}-{self.prefix}{len(self.shards) - 1:05d}-{digest[:16]}.tfrecord"
        self._file.close()
        path = os.path.join(self.staging_dir, entry["file"])
        os.replace(self._file.name, path)
        self._file = None
        self.songs_done += self.songs_open
        self.songs_open = []
        if self.publish is not None:
            self.publish(path, entry)


def convert(in_uri: str, out_uri: str, config: ConvertConfig = ConvertConfig(), *, progress: bool = True) -> dict:
    """Convert this task's share of the songs under in_uri; write shards and a part manifest (and manifest.json when
    this is the only task). Returns the part manifest."""
    config.validate()
    storage.check_writable(out_uri)  # location, credentials, endpoint, TLS: before the first decode
    single = config.num_shards == 1
    name = "dataset" if single else f"task-{config.shard_index:05d}-of-{config.num_shards:05d}"
    with storage.Lease(out_uri, name, "convert", exclusive=single) as lease:
        return _convert(in_uri, out_uri, config, progress, lease)


def _convert(in_uri: str, out_uri: str, config: ConvertConfig, progress: bool, lease: storage.Lease) -> dict:
    started = time.monotonic()
    all_songs = list_songs(in_uri, config.validation_fraction)
    if not all_songs:
        raise ValueError(f"no audio files ({', '.join(audio.AUDIO_EXTENSIONS)}) found under {in_uri}")
    genres = sorted({song.genre for song in all_songs})
    mine = all_songs[config.shard_index :: config.num_shards]
    prefix = f"p{config.shard_index:03d}-" if config.num_shards > 1 else ""
    part = new_manifest(config.sample_rate, config.segment_samples, genres, config.validation_fraction)
    part["conversion"] = _conversion_id(all_songs, config)

    progress_uri = storage.join(out_uri, f"{PROGRESS_PREFIX}{config.shard_index:05d}-of-{config.num_shards:05d}.json")

    def upload(path: str, entry: dict) -> None:
        # content-named and listed by no manifest yet: readers of the current dataset never see it
        storage.upload_file(path, storage.join(out_uri, entry["file"]))
        os.remove(path)
        journal = {
            "conversion": part["conversion"],
            "shards": {split: [e for e in w.shards if e["file"]] for split, w in writers.items()},
            "songs": [song for w in writers.values() for song in w.songs_done],
            "skipped": part["skipped"],
        }  # what a rerun after a crash need not convert again
        storage.write_bytes(progress_uri, dumps(journal))

    remove_dead_staging()
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        scratch = os.path.join(staging, "scratch")
        os.makedirs(scratch)
        shard_bytes = int(config.shard_megabytes * 2**20)
        writers = {split: ShardWriter(staging, split, prefix, shard_bytes, upload) for split in part["splits"]}
        mine = _resume(progress_uri, part, writers, mine, progress)
        bar = _progress_bar(len(mine), progress)
        with concurrent.futures.ThreadPoolExecutor(config.workers) as pool:
            batches = _batches(mine, config.decode_batch, config.workers)
            for results in _ordered_map(
                pool, lambda batch: convert_batch(batch, config, scratch), batches, config.workers
            ):
                for result in results:
                    _record_result(result, config, genres, writers, part)
                    bar.update(1)
                bar.set_postfix_str(f"{part['totals']['samples'] / config.sample_rate / 3600:.2f} h")
        bar.close()
        for split, writer in writers.items():
            writer.close()
            part["splits"][split]["shards"] = writer.shards
            part["splits"][split]["records"] = sum(s["records"] for s in writer.shards)
            part["splits"][split]["samples"] = sum(s["samples"] for s in writer.shards)
    finish_totals(part)
    part["task"] = {
        "shard_index": config.shard_index,
        "num_shards": config.num_shards,
        "seconds": round(time.monotonic() - started, 3),
    }  # timing lives only in parts, not manifest.json
    part_file = part_name(config.shard_index, config.num_shards)
    lease.check()
    storage.write_bytes(storage.join(out_uri, part_file), dumps(part))
    storage.delete(progress_uri)
    if progress:
        _print_summary(part, time.monotonic() - started, config.sample_rate)
    if config.num_shards == 1:
        merge(out_uri, 1, lease)  # the only part: publish manifest.json under the lease already held
    return part


STAGING_PREFIX = "waveforms-convert-"
PROGRESS_PREFIX = ".waveforms-progress-"  # under OUT_URI: the shards and songs a killed conversion already published


def _resume(progress_uri: str, part: dict, writers: dict, songs: list[Song], progress: bool) -> list[Song]:
    """Take over what an interrupted run of the same conversion published (its journal, if every shard it lists is
    still there with its size); -> the songs still to convert."""
    try:
        journal = json.loads(storage.read_bytes(progress_uri))
        if journal.get("conversion") != part["conversion"]:
            return songs
        for entries in journal["shards"].values():
            for entry in entries:
                if storage.size(storage.join(storage.parent(progress_uri), entry["file"])) != entry["bytes"]:
                    return songs  # a shard was removed since (another publication): start over
    except (storage.StorageNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return songs
    for split, writer in writers.items():
        writer.shards = list(journal["shards"].get(split, []))
        writer.songs_done = [song for song in journal["songs"] if song["split"] == split]
    part["songs"] = list(journal["songs"])
    part["skipped"] = list(journal["skipped"])
    part["totals"]["samples"] = sum(song["samples"] for song in part["songs"])
    done = {song["song_id"] for song in part["songs"]} | {item["source"] for item in part["skipped"]}
    remaining = [song for song in songs if song.song_id not in done and song.source not in done]
    if len(remaining) < len(songs):
        print(f"resuming: {len(songs) - len(remaining)} of {len(songs)} songs were already converted", file=sys.stderr)
    return remaining


def remove_dead_staging() -> None:
    """Remove the staging folders of conversions killed with SIGKILL on this machine (their pid is in the name and no
    longer runs); SIGTERM and errors clean up their own."""
    import shutil

    root = tempfile.gettempdir()
    for name in os.listdir(root):
        pid = name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if not name.startswith(STAGING_PREFIX) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def _conversion_id(songs: list[Song], config: ConvertConfig) -> str:
    """The same for every task of one conversion (same listing, split and settings), different for another: merge
    refuses to join a part left by an earlier conversion into the same folder."""
    settings = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in ("shard_index", "workers", "max_in_memory_seconds", "decode_batch")
    }
    listing = [[song.song_id, song.genre, song.split] for song in songs]
    return hashlib.sha256(json.dumps([settings, listing], sort_keys=True).encode()).hexdigest()[:16]


MAX_DECODE_BATCH = 64  # inputs (and output files) one ffmpeg process opens at once
BATCH_FILE_BYTES = 8 << 20  # larger inputs (a 2-min 320 kb/s mp3 is 4.8 MB) are decoded alone, streamed
BATCHES_PER_WORKER = 4
BATCH_BYTES = 16 << 20  # input bytes per batch (about 8 two-minute mp3s); decode_many also bounds what it holds


def _batches(songs: list[Song], songs_per_batch: int, workers: int = 1) -> list[list[Song]]:
    """Consecutive small local files, up to songs_per_batch of them, share one ffmpeg process (audio.decode_many);
    large, remote or unreadable ones go alone (a remote file's size is unknown until it is downloaded). A short
    listing gets smaller batches, BATCHES_PER_WORKER per worker at least, so no worker idles while one decodes the
    last big batch."""
    songs_per_batch = max(1, min(songs_per_batch, math.ceil(len(songs) / (BATCHES_PER_WORKER * workers))))
    batches: list[list[Song]] = []
    filling: list[Song] | None = None  # the batch small files join
    filling_bytes = 0
    for song in songs:
        size = None
        if not storage.is_remote(song.source):
            with contextlib.suppress(OSError):
                size = os.stat(song.source).st_size
        if songs_per_batch == 1 or size is None or size > BATCH_FILE_BYTES:
            batches.append([song])
            filling = None
            continue
        if filling is None or len(filling) >= songs_per_batch or filling_bytes + size > BATCH_BYTES:
            filling, filling_bytes = [], 0
            batches.append(filling)
        filling.append(song)
        filling_bytes += size
    return batches


def _ordered_map(pool: concurrent.futures.Executor, function, items: list, ahead: int):
    """pool.map with at most `ahead` results pending: pool.map submits every song at once, so songs finished behind a
    long one would pile up in memory."""
    pending: collections.deque = collections.deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _record_result(result: SongResult, config: ConvertConfig, genres: list[str], writers: dict, part: dict) -> None:
    song = result.song
    if result.error:
        part["skipped"].append({"source": song.source, "reason": result.error})
        return
    for index, codes in enumerate(_song_segments(result, config.segment_samples)):
        writers[song.split].write(
            records.Segment(
                codes,
                song.song_id,
                song.genre,
                genres.index(song.genre),
                config.sample_rate,
                index * config.segment_samples,
            )
        )
    entry = {
            "song_id": song.song_id,
            "source": song.source,
            "sha256": result.sha256,
            "genre": song.genre,
            "split": song.split,
            "samples": result.samples,
            "seconds": round(result.samples / config.sample_rate, 3),
            "peak_db": round(result.peak_db, 2) if math.isfinite(result.peak_db) else None,
            "silent": bool(result.peak_db < config.silence_threshold_db),
            PROFILE_SAMPLE: result.profile,  # parts only: merge_parts summarises these as the manifest's "statistics"
        }  # fmt: skip
    part["songs"].append(entry)
    writers[song.split].end_song(entry)
    part["totals"]["samples"] += result.samples


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="convert", unit="song", disable=not enabled, file=sys.stderr, mininterval=0.5)


def _print_summary(manifest: dict, seconds: float, sample_rate: int) -> None:
    totals = manifest["totals"]
    audio_seconds = totals["samples"] / sample_rate
    print(
        f"converted {totals['songs']} songs, {audio_seconds / 3600:.2f} h of audio, in {seconds:.1f} s "
        f"({audio_seconds / max(seconds, 1e-9):.0f}x real time); skipped {totals['skipped']}",
        file=sys.stderr,
    )
    held_out = manifest.get("held_out", {})
    if held_out.get("requested_fraction"):
        print(f"validation: {len(held_out['songs'])} songs, {100 * held_out['fraction']:.1f}% of the audio "
              f"(asked for {100 * held_out['requested_fraction']:.0f}%)", file=sys.stderr)  # fmt: skip
    for item in manifest["skipped"]:
        print(f"  skipped {item['source']}: {item['reason']}", file=sys.stderr)
