"""manifest.json: what a dataset is. Written by `convert` (one manifest, or parts merged into one), read by `dataset`,
`verify`, `baselines`, the reports and the pipeline's stages; this module owns its location, schema, checks, merge,
publication and the records it lists.

  {"format", "encoding", "sample_rate", "segment_samples", "genres": [...] (genre_id = index),
   "splits": {"train"|"validation": {"shards": [{"file", "records", "samples", "bytes", "sha256"}], "records",
              "samples"}},
   "conversion": id shared by the parts of one conversion (settings + listing),
   "songs": [{"song_id", "source", "sha256", "genre", "split", "samples", "seconds", "peak_db", "silent"}],
   "skipped": [{"source", "reason"}], "totals": {"songs", "samples", "hours", "skipped", "bytes"},
   "validation_fraction", "held_out": {"requested_fraction", "fraction" (of the samples), "songs": [song_id]},
   "statistics": audio_checks.DataProfile (the data's 1-s window RMS/flatness/DC percentiles: the clip checks' ruler)}

Shard "file" entries are relative to the manifest's folder, so a dataset folder can be copied anywhere; a published
copy (publish_manifest) lists absolute URIs instead. A song is cut into consecutive records of segment_samples
(song_records). Readers check each shard's size and record count at open (check_shards), every record's CRCs while
reading (iter_shard_records) and, on `waveforms verify`, each shard's sha256.
"""

from __future__ import annotations

import json
import os
import re

from waveforms import audio_checks, records, storage

MANIFEST = "manifest.json"
# every shard name convert has written (older unhashed names too): what publishing may remove when no manifest lists it
SHARD_NAME = re.compile(r"(train|validation)-(p\d{3}-)?\d{5}(-[0-9a-f]{16})?\.tfrecord")
PROFILE_SAMPLE = "statistics_sample"  # songs of part manifests: per-window measures, summarised as "statistics"
MAX_SAMPLE_RATE = 96000  # convert's range


class ManifestError(ValueError):
    """A manifest is missing, unreadable or lacks what the dataset needs; the message names the URI."""


class ShardError(ManifestError):
    """A shard the manifest lists is missing, or differs from its manifest entry; the message names the shard."""


class NothingConvertedError(RuntimeError):
    """Every input failed: nothing is published (an empty dataset would only fail later, in training)."""


# ------------------------------------------------------------------------------------------------- location, checks


def manifest_uri(dataset_uri: str) -> str:
    """A dataset is named by its folder or by its manifest file; this gives the manifest file."""
    return dataset_uri if dataset_uri.endswith(".json") else storage.join(dataset_uri, MANIFEST)


def load_dataset_manifest(dataset_uri: str) -> tuple[str, dict]:
    """A dataset (its folder or its manifest file) -> (the manifest's URI, the checked manifest)."""
    uri = manifest_uri(dataset_uri)
    return uri, load_manifest(uri)


def load_manifest(uri: str) -> dict:
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except storage.StorageNotFoundError:
        raise ManifestError(f"{uri}: manifest not found (run `waveforms convert` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{uri}: not a JSON manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != records.FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ManifestError(f"{uri}: format {found!r}, expected {records.FORMAT!r}")
    if not isinstance(manifest.get("splits"), dict) or not isinstance(manifest.get("genres"), list):
        raise ManifestError(f"{uri}: manifest lacks 'splits' or 'genres'")
    validate_manifest(manifest, uri)
    return manifest


def _whole(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def validate_manifest(manifest: dict, uri: str) -> None:
    """Schema and consistency, from the manifest alone: a manifest that contradicts itself is refused in one line
    before any training (the records are checked against it when the shards are opened: check_shards)."""

    def fail(message: str):
        raise ManifestError(f"{uri}: {message}; convert the dataset again")

    rate, segment, genres = manifest.get("sample_rate"), manifest.get("segment_samples"), manifest["genres"]
    if not _whole(rate, 1000) or rate > MAX_SAMPLE_RATE:
        fail(f"sample_rate {rate!r} is not a whole number of Hz in 1000..{MAX_SAMPLE_RATE}")
    if not _whole(segment, 1):
        fail(f"segment_samples {segment!r} is not a whole number > 0")
    if not all(isinstance(name, str) and name for name in genres) or len(set(genres)) != len(genres):
        fail("genres must be distinct non-empty names")
    shard_samples = {}
    for split, entry in manifest["splits"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
            fail(f"split {split!r} has no list of shards")
        for shard in entry["shards"]:
            if not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or not shard["file"]:
                fail(f"split {split!r}: a shard entry without a file name")
            for key in ("records", "samples", "bytes"):
                if key in shard and not _whole(shard[key]):
                    fail(f"shard {shard['file']}: {key} {shard[key]!r} is not a whole number >= 0")
            if "bytes" in shard and shard.get("samples", 0) > shard["bytes"]:
                fail(f"shard {shard['file']}: {shard['samples']} samples cannot fit in {shard['bytes']} bytes")
        if all("samples" in shard for shard in entry["shards"]):
            shard_samples[split] = sum(shard["samples"] for shard in entry["shards"])
            if entry.get("samples") is not None and entry["samples"] != shard_samples[split]:
                fail(f"split {split!r} lists {entry['samples']} samples, its shards {shard_samples[split]}")
    songs = manifest.get("songs")
    if not songs:
        return  # a hand-made manifest without a songs table: nothing more to compare
    song_samples: dict[str, int] = {}
    for song in songs:
        if not isinstance(song, dict) or not _whole(song.get("samples")) or song.get("split") not in manifest["splits"]:
            fail(f"song entry {str(song)[:80]} lacks a split or a whole number of samples")
        if song.get("genre") not in genres:
            fail(f"song {song.get('song_id')!r} has genre {song.get('genre')!r}, not in the genre list {genres}")
        song_samples[song["split"]] = song_samples.get(song["split"], 0) + song["samples"]
    for split, total in shard_samples.items():
        if song_samples.get(split, 0) != total:
            fail(
                f"the songs of split {split!r} add up to {song_samples.get(split, 0)} samples, its shards hold {total}"
            )


def split_entry(manifest: dict, manifest_uri: str, split: str) -> dict:
    """manifest["splits"][split], or a ManifestError naming the splits there are."""
    if split not in manifest["splits"]:
        raise ManifestError(f"{manifest_uri}: no split {split!r} (has {sorted(manifest['splits'])})")
    return manifest["splits"][split]


def shard_uris(manifest: dict, manifest_uri: str, split: str) -> list[str]:
    """The split's shard URIs; "file" entries are relative to the manifest's folder (absolute ones are kept)."""
    base = storage.parent(manifest_uri)
    uris = []
    for entry in split_entry(manifest, manifest_uri, split)["shards"]:
        name = entry["file"]
        uris.append(name if "://" in name or os.path.isabs(name) else storage.join(base, *name.split("/")))
    return uris


def song_records(manifest: dict, song: dict) -> list[tuple[int, int]]:
    """(offset, samples) of each record of a song: songs are cut into consecutive segment_samples records."""
    segment, samples = int(manifest["segment_samples"]), int(song["samples"])
    return [(offset, min(segment, samples - offset)) for offset in range(0, samples, segment)]


# ------------------------------------------------------------------------------------------------- shards, records


def check_shards(manifest: dict, manifest_uri: str, split: str, *, checksums: bool = False) -> list[str]:
    """The split's shard URIs, after checking each against its manifest entry: it exists, has the listed byte size and
    (local shards: from the length headers, a seek per record) record count; with checksums=True every byte is read and
    the sha256 and both CRCs of every record are checked too. Raise ShardError naming the first shard that differs."""
    uris = shard_uris(manifest, manifest_uri, split)
    for uri, entry in zip(uris, split_entry(manifest, manifest_uri, split)["shards"], strict=True):
        size = storage.size(uri)
        if size is None:
            raise ShardError(f"{uri}: shard listed in {manifest_uri} does not exist (deleted, or the manifest was "
                             "moved without its shards)")  # fmt: skip
        if entry.get("bytes") is not None and size != entry["bytes"]:
            raise ShardError(f"{uri}: {size} bytes, the manifest lists {entry['bytes']} (damaged, or written by "
                             "another conversion): convert again")  # fmt: skip
        if checksums:
            _check_contents(uri, entry)
        elif not storage.is_remote(uri):  # remote counts are checked while streaming (iter_shard_records)
            try:
                with storage.open_read(uri) as stream:
                    found = records.count_records(stream, name=uri)
            except records.RecordError as error:
                raise ShardError(f"{error}: convert again") from None
            _check_count(uri, entry, found)
    return uris


def _check_count(uri: str, entry: dict, found: int) -> None:
    if entry.get("records") is not None and found != entry["records"]:
        raise ShardError(f"{uri}: {found} records, the manifest lists {entry['records']}: convert again")


def _check_contents(uri: str, entry: dict) -> None:
    import hashlib

    class Hashing:  # hashes what iter_records reads, so the shard is read once
        def __init__(self, stream):
            self.stream, self.digest = stream, hashlib.sha256()

        def read(self, size: int) -> bytes:
            data = self.stream.read(size)
            self.digest.update(data)
            return data

    with storage.open_read(uri) as stream:
        hashing = Hashing(stream)
        try:
            found = sum(1 for _ in records.iter_records(hashing, name=uri))
        except records.RecordError as error:
            raise ShardError(f"{error}: convert again") from None
    if entry.get("sha256") and hashing.digest.hexdigest() != entry["sha256"]:
        raise ShardError(f"{uri}: sha256 differs from the manifest's: convert again")
    _check_count(uri, entry, found)


def check_first_record(manifest: dict, manifest_uri: str, uris: list[str]) -> None:
    """The first record of the first non-empty shard agrees with the manifest (sample rate, genre id and name): a
    manifest written for other records is refused before training, in one line naming the shard."""
    for uri in uris:
        for serialized in iter_shard_records(uri):
            segment = records.decode_example(serialized)
            genres = manifest["genres"]
            if segment.sample_rate != manifest["sample_rate"]:
                raise ShardError(f"{uri}: records at {segment.sample_rate} Hz, the manifest {manifest_uri} says "
                                 f"{manifest['sample_rate']} Hz: convert again")  # fmt: skip
            if not 0 <= segment.genre_id < len(genres) or genres[segment.genre_id] != segment.genre:
                raise ShardError(f"{uri}: a record of genre {segment.genre!r} has genre id {segment.genre_id}, the "
                                 f"manifest {manifest_uri} lists genres {genres}: convert again")  # fmt: skip
            return


def damaged_shard_error(manifest: dict, manifest_uri: str, error: Exception) -> ShardError:
    """After TensorFlow reported corrupt data (its message names no file): the shard that fails a full check."""
    for split in manifest["splits"]:
        try:
            check_shards(manifest, manifest_uri, split, checksums=True)
        except ShardError as found:
            return found
    return ShardError(f"{manifest_uri}: a shard is damaged ({' '.join(str(error).split())[:200]})")


def iter_shard_records(uri: str, expected_records: int | None = None):
    """The verified records of one shard, streamed (local or object storage); a count other than the manifest's is a
    ShardError naming the shard, raised after the last record."""
    found = 0
    with storage.open_read(uri) as stream:
        try:
            for serialized in records.iter_records(stream, name=uri):
                found += 1
                yield serialized
        except records.RecordError as error:
            raise ShardError(f"{error}: convert again") from None
    _check_count(uri, {"records": expected_records}, found)


def iter_segments(manifest: dict, manifest_uri: str, split: str):
    """Records of one split read straight from the shards (local or object storage), without TensorFlow; every shard
    is checked against its manifest entry first (check_shards) and its record count while read."""
    uris = check_shards(manifest, manifest_uri, split)
    for uri, entry in zip(uris, manifest["splits"][split]["shards"], strict=True):
        for serialized in iter_shard_records(uri, entry.get("records")):
            yield records.decode_example(serialized)


def verify(manifest_uri: str) -> dict:
    """Read every shard of every split and check it against the manifest; -> {"shards", "records", "bytes"}."""
    manifest = load_manifest(manifest_uri)
    totals = {"shards": 0, "records": 0, "bytes": 0}
    for split, entry in manifest["splits"].items():
        check_shards(manifest, manifest_uri, split, checksums=True)
        totals["shards"] += len(entry["shards"])
        totals["records"] += sum(int(shard.get("records", 0)) for shard in entry["shards"])
        totals["bytes"] += sum(int(shard.get("bytes", 0)) for shard in entry["shards"])
    return totals


# ------------------------------------------------------------------------------------------ building, merge, publish


def new_manifest(sample_rate: int, segment_samples: int, genres: list[str], validation_fraction: float) -> dict:
    """An empty manifest (or part) of a conversion with these settings."""
    return {
        "format": records.FORMAT,
        "encoding": records.ENCODING,
        "sample_rate": sample_rate,
        "segment_samples": segment_samples,
        "genres": genres,
        "splits": {split: {"shards": [], "records": 0, "samples": 0} for split in ("train", "validation")},
        "songs": [],
        "skipped": [],
        "totals": {"songs": 0, "samples": 0, "hours": 0.0, "skipped": 0},
        "validation_fraction": validation_fraction,
    }


def finish_totals(manifest: dict) -> None:
    totals = manifest["totals"]
    totals["songs"] = len(manifest["songs"])
    totals["samples"] = sum(song["samples"] for song in manifest["songs"])
    totals["hours"] = round(totals["samples"] / manifest["sample_rate"] / 3600, 4)
    totals["skipped"] = len(manifest["skipped"])
    held_out = [song for song in manifest["songs"] if song["split"] == "validation"]
    manifest["held_out"] = {
        "requested_fraction": manifest.get("validation_fraction"),
        "fraction": round(sum(song["samples"] for song in held_out) / max(totals["samples"], 1), 4),
        "songs": sorted(song["song_id"] for song in held_out),
    }


def part_name(shard_index: int, num_shards: int) -> str:
    return f"manifest-part-{shard_index:05d}-of-{num_shards:05d}.json"


def merge_parts(out_uri: str, num_shards: int) -> tuple[dict, list[dict]]:
    """Join the part manifests of all tasks into manifest.json and publish it; a missing, unreadable or foreign part is
    an error naming it. Returns the manifest and each task's record (index, seconds)."""
    with storage.Lease(out_uri, "dataset", "convert --merge") as lease:
        return merge(out_uri, num_shards, lease)


def merge(out_uri: str, num_shards: int, lease: storage.Lease) -> tuple[dict, list[dict]]:
    """merge_parts under a lease the caller holds (a conversion of one task merges its own part)."""
    parts = []
    for index in range(num_shards):
        uri = storage.join(out_uri, part_name(index, num_shards))
        if not storage.exists(uri):
            raise FileNotFoundError(f"part manifest {uri} is missing: did convert task {index} of {num_shards} finish?")
        try:
            part = json.loads(storage.read_bytes(uri))
            if not isinstance(part, dict) or not isinstance(part.get("task"), dict) or "splits" not in part:
                raise ValueError("not a part manifest")
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"part manifest {uri} is damaged ({error}): run convert task {index} again") from None
        if parts and part.get("conversion") != parts[0].get("conversion"):
            raise ValueError(
                f"part manifest {uri} belongs to another conversion than part 0 (different input or settings): "
                f"run convert task {index} again"
            )
        parts.append(part)
    tasks = [part.pop("task") for part in parts]
    merged = json.loads(json.dumps(parts[0]))  # deep copy
    for part in parts[1:]:
        if (part["genres"], part["sample_rate"]) != (merged["genres"], merged["sample_rate"]):
            raise ValueError(f"part manifests under {out_uri} disagree on genres or sample rate: convert them again")
        for split, entry in part["splits"].items():
            target = merged["splits"][split]
            target["shards"] += entry["shards"]
            target["records"] += entry["records"]
            target["samples"] += entry["samples"]
        merged["songs"] += part["songs"]
        merged["skipped"] += part["skipped"]
    merged["songs"].sort(key=lambda song: song["song_id"])
    merged["skipped"].sort(key=lambda item: item["source"])
    finish_totals(merged)
    if not merged["songs"]:
        first = merged["skipped"][0] if merged["skipped"] else {"source": "-", "reason": "no input"}
        raise NothingConvertedError(
            f"every one of the {len(merged['skipped'])} inputs failed, nothing published under {out_uri} "
            f"(first: {first['source']}: {first['reason']})"
        )
    # parts keep each song's measured windows (they survive a resumed conversion in its journal); the manifest keeps
    # their summary, the data profile the clip checks measure against
    sample = {"rms_dbfs": [], "flatness": [], "dc": [], "periodicity": [], "change": []}
    for song in merged["songs"]:
        for name, values in song.pop(PROFILE_SAMPLE, {}).items():
            sample.setdefault(name, []).extend(values)  # older parts lack periodicity or change: left out
    if sample["rms_dbfs"]:
        merged["statistics"] = audio_checks.DataProfile.from_samples(**sample).to_dict()
    lease.check()
    publish(out_uri, merged)
    return merged, tasks


def publish(out_uri: str, manifest: dict) -> None:
    """Replace manifest.json in one atomic write, then remove the shards it does not list: the previous dataset's and
    those of conversions killed before publishing. Until the write, readers see the old dataset whole (its shards have
    other names than the new ones); after it, the new one."""
    target = storage.join(out_uri, MANIFEST)
    previous = set()
    try:
        old = json.loads(storage.read_bytes(target))
        previous = {shard["file"] for split in old["splits"].values() for shard in split["shards"]}
    except storage.StorageNotFoundError:
        pass
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        pass  # a damaged old manifest lists nothing we could trust; the name pattern still finds its shards
    storage.write_bytes(target, dumps(manifest))
    listed = {shard["file"] for split in manifest["splits"].values() for shard in split["shards"]}
    root = out_uri.rstrip("/") + ("/" if "://" in out_uri else os.sep)
    present = {uri[len(root) :] for uri in storage.list_files(out_uri, suffix=".tfrecord") if uri.startswith(root)}
    stale = {name for name in present if SHARD_NAME.fullmatch(name)} | (previous & present)
    for name in sorted(stale - listed):
        storage.delete(storage.join(out_uri, name))


def publish_manifest(out_uri: str, folder: str) -> dict:
    """Write a copy of out_uri's manifest.json into a local folder with absolute shard URIs: a small, movable handle on
    a dataset whose shards stay where they are (a pipeline artifact, for example)."""
    manifest = json.loads(storage.read_bytes(storage.join(out_uri, MANIFEST)))
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            shard["file"] = storage.join(out_uri, shard["file"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, MANIFEST), "wb") as f:
        f.write(dumps(manifest))
    return manifest


def dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
