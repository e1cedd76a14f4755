"""Getting music in: polite HTTP (http.py), the FMA website (fma.py), the FMA dataset archives (fma_dataset.py) and URL
lists (urls.py). This module holds what they share: the JSON-lines track index, the failure log, and the output
location (a local folder, or object storage staged through a local folder one finished file at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from waveforms import storage

INDEX_NAME = "index.jsonl"
FAILURES_NAME = "failures.jsonl"


@dataclass(frozen=True)
class Failure:
    item: str  # the URL or path that failed
    reason: str  # short stable code, e.g. "host-not-allowed", "http-404", "checksum-mismatch"
    detail: str = ""


def slugify(text: str, max_length: int = 60) -> str:
    """ASCII, lowercase, hyphen-separated; safe as a file or folder name on every filesystem."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "untitled"


def join_uri(base: str, relative: str) -> str:
    return storage.join(base, *relative.split("/"))


def track_entry(
    source_url: str,
    file: str,
    size: int,
    sha256: str,
    *,
    title: str,
    genre: str,
    artist: str = "",
    licence: str = "",
    **details,
) -> dict:
    """One line of index.jsonl, the keys every source writes first (source_url is the key of the index, `file` is
    relative to the output folder), then what only some sources know (track_id, album, audio_url, licence_url, ...)."""
    entry = {"source_url": source_url, "title": title, "artist": artist, "genre": genre, "licence": licence,
             "file": file, "bytes": int(size), "sha256": sha256}  # fmt: skip
    clashing = sorted(set(details) & set(entry))
    if clashing:
        raise ValueError(f"track_entry: {clashing} are common keys, not details")
    return {**entry, **details}


class TrackIndex:
    """Append-only JSON-lines index, one track per line, keyed by its source. Each line is flushed and fsynced, so a
    killed run loses at most the line being written (a torn last line is ignored on load)."""

    def __init__(self, path: Path, key_field: str = "source_url"):
        self.path, self.key_field = Path(path), key_field
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.entries[entry[key_field]] = entry
            # Rewrite without a torn line so appends start on a line boundary.
            self._rewrite()

    def _rewrite(self) -> None:
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries.values())
        storage.write_bytes(str(self.path), text.encode("utf-8"))

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def add(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replacing = entry[self.key_field] in self.entries
        self.entries[entry[self.key_field]] = entry
        if replacing:
            self._rewrite()
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def __len__(self) -> int:
        return len(self.entries)


class Output:
    """Where ingested files go. Local: straight into the folder. Remote (s3://, minio://): into a staging folder,
    uploaded atomically (waveforms.storage.upload_file) as each file finishes, then removed locally so disk stays
    bounded. The index lives in the staging folder and is uploaded at the end (and fetched back to resume)."""

    def __init__(self, uri: str, staging_dir: str | Path | None = None):
        self.uri = str(uri)
        self.remote = storage.is_remote(self.uri)
        if self.remote:
            digest = hashlib.sha1(self.uri.encode()).hexdigest()[:16]
            default = Path(tempfile.gettempdir()) / "waveforms-ingest-staging" / digest
            self.root = Path(staging_dir) if staging_dir else default
        else:
            self.root = Path(storage.parse(self.uri)[2])
        self.root.mkdir(parents=True, exist_ok=True)
        if self.remote and not (self.root / INDEX_NAME).exists():
            if storage.exists(join_uri(self.uri, INDEX_NAME)):
                storage.download_file(join_uri(self.uri, INDEX_NAME), str(self.root / INDEX_NAME))
        self.index = TrackIndex(self.root / INDEX_NAME)
        self.failures: list[Failure] = []
        self.skipped: list[Failure] = []  # deliberate, not errors: e.g. non-audio files in a folder

    def local_path(self, relative: str) -> Path:
        return self.root / relative

    def is_complete(self, entry: dict | None) -> bool:
        """An index entry whose file is really there (with the recorded size, when local)."""
        if not entry:
            return False
        if self.remote:
            return storage.exists(join_uri(self.uri, entry["file"]))
        path = self.local_path(entry["file"])
        return path.is_file() and path.stat().st_size == entry["bytes"]

    def publish(self, relative: str) -> None:
        if self.remote:
            local = self.local_path(relative)
            storage.upload_file(str(local), join_uri(self.uri, relative))
            local.unlink()

    def record(self, entry: dict) -> None:
        """Publish the finished file, then index it: an indexed entry always has its file in place."""
        self.publish(entry["file"])
        self.index.add(entry)

    def fail(self, item: str, reason: str, detail: str = "") -> None:
        self.failures.append(Failure(item, reason, detail))

    def skip(self, item: str, reason: str, detail: str = "") -> None:
        self.skipped.append(Failure(item, reason, detail))

    def finish(self) -> None:
        """Write this run's failures (and skips, marked) and, for remote outputs, upload index and log."""
        self.index.path.touch()  # an empty index still says "this run happened and found nothing"
        rows = [{**asdict(f), "skipped": False} for f in self.failures]
        rows += [{**asdict(f), "skipped": True} for f in self.skipped]
        (self.root / FAILURES_NAME).write_text("".join(json.dumps(row) + "\n" for row in rows), "utf-8")
        if self.remote:
            for name in (INDEX_NAME, FAILURES_NAME):
                storage.upload_file(str(self.root / name), join_uri(self.uri, name))

    def copy_in(self, source: Path, relative: str) -> Path:
        target = self.local_path(relative)
        storage.copy(str(source), str(target))
        return target


ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # the GUID every ASF (.wma) file starts with


def sniff_audio_format(head: bytes) -> str | None:
    """The container named by a file's first bytes ("mp3", "wav", ...), or None when they are not audio we know.
    Every extension in audio.AUDIO_EXTENSIONS has its container here."""
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS sync; layer 00 (reserved in mp3)
        return "aac"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b".snd"):
        return "au"
    if head.startswith(ASF_HEADER):
        return "wma"
    return None
