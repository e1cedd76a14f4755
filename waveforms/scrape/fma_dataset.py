"""The FMA dataset archives (Defferrard et al., "FMA: A Dataset For Music Analysis", ISMIR 2017).

Download (resumable with HTTP Range, SHA-1 verified against the published checksums), inspect every zip member before
extracting anything (no absolute paths, no `..`, no symlinks, no encrypted members, per-file/total size caps, a
compression-ratio cap against zip bombs), then extract only the mp3s whose top genre passes the filter, read from the
metadata's tracks.csv (whose real header spans three rows).
"""

from __future__ import annotations

import csv
import io
import re
import stat
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from waveforms import storage
from waveforms.scrape import Output, slugify, track_entry
from waveforms.scrape.http import ARCHIVE_TYPES, FetchError, PoliteFetcher, check_mp3, file_digests

FMA_DATASET_URL = "https://os.unil.cloud.switch.ch/fma"
FMA_DATASET_HOSTS = ("os.unil.cloud.switch.ch",)

# Published SHA-1 checksums. Source: README.md of github.com/mdeff/fma, "History", 2017-05-09 pre-publication release
# (the same values appear in its "Usage" step `sha1sum -c`). Sizes as stated there.
FMA_ARCHIVES: dict[str, tuple[str, str]] = {
    # name: (file name, sha1)
    "fma_metadata": ("fma_metadata.zip", "f0df49ffe5f2a6008d7dc83c6915b31835dfe733"),  # 342 MiB
    "fma_small": ("fma_small.zip", "ade154f733639d52e35e32f5593efe5be76c6d70"),  # 7.2 GiB, 8,000 clips of 30 s
    "fma_medium": ("fma_medium.zip", "c67b69ea232021025fca9231fc1c7c1a063ab50b"),  # 22 GiB, 25,000 clips
    "fma_large": ("fma_large.zip", "497109f4dd721066b5ce5e5f250ec604dc78939e"),  # 93 GiB, 106,574 clips
    "fma_full": ("fma_full.zip", "0f0ace23fbe9ba30ecb7e95f763e435ea802b8ab"),  # 879 GiB, 106,574 untrimmed tracks
}
SUBSETS = ("fma_small", "fma_medium", "fma_large", "fma_full")
_TRACK_MEMBER = re.compile(r"^fma_[a-z]+/\d{3}/(\d{6})\.mp3$")


@dataclass(frozen=True)
class ExtractLimits:
    max_member_bytes: int = 1 << 30  # 1 GiB: fma_full's longest tracks are a few hundred MB
    max_total_bytes: int = 1 << 40  # 1 TiB: fma_full is 879 GiB
    max_ratio: float = 200.0  # uncompressed/compressed; mp3 is ~1, CSV ~10, a zip bomb 1000+
    max_members: int = 250_000


class UnsafeArchive(ValueError):
    """The archive (not just one member) is refused: extracting any of it would be unsafe."""


@dataclass(frozen=True)
class FmaDatasetSource:
    subset: str = "fma_small"
    genres: tuple[str, ...] = ()  # top genres (tracks.csv genre_top), case-insensitive; empty: all
    base_url: str = FMA_DATASET_URL
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha1, overriding FMA_ARCHIVES (mirrors)
    archive_dir: str | None = None  # where archives (and their .part files) live; default <out>/.archives
    max_tracks: int | None = None
    limits: ExtractLimits = ExtractLimits()

    def __post_init__(self):
        if self.subset not in SUBSETS:
            raise ValueError(f"FmaDatasetSource.subset {self.subset!r} is not one of {SUBSETS}")

    def sha1(self, file_name: str) -> str:
        if file_name in self.checksums:
            return self.checksums[file_name]
        for known_name, sha1 in FMA_ARCHIVES.values():
            if known_name == file_name:
                return sha1
        raise ValueError(f"no published checksum for {file_name}: pass one with checksums={{{file_name!r}: '<sha1>'}}")


def member_problem(info: zipfile.ZipInfo, limits: ExtractLimits) -> str | None:
    """Why this member must not be extracted, or None."""
    name = info.filename
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name:
        return "empty name, NUL or backslash in the name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in path.parts:
        return "path traversal (..)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if info.flag_bits & 0x1:
        return "encrypted member"
    if info.file_size > limits.max_member_bytes:
        return f"{info.file_size} bytes exceeds the per-file cap {limits.max_member_bytes}"
    if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return f"compression ratio {info.file_size / max(info.compress_size, 1):.0f} exceeds {limits.max_ratio:.0f} (zip bomb)"
    return None


def inspect_archive(archive: zipfile.ZipFile, limits: ExtractLimits) -> list[zipfile.ZipInfo]:
    """Every member checked before anything is written; one bad member refuses the whole archive."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise UnsafeArchive(f"{len(members)} members exceeds the cap {limits.max_members}")
    total = 0
    for info in members:
        problem = member_problem(info, limits)
        if problem:
            raise UnsafeArchive(f"member {info.filename!r}: {problem}")
        total += info.file_size
    if total > limits.max_total_bytes:
        raise UnsafeArchive(f"{total} bytes uncompressed exceeds the total cap {limits.max_total_bytes}")
    return members


def extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limits: ExtractLimits) -> int:
    """Stream one member to target (atomically), counting bytes: zipfile stops at the declared size, and the count
    makes sure that size is what we checked."""
    written = 0

    def write(sink) -> None:
        nonlocal written
        with archive.open(info) as source:
            while block := source.read(1 << 20):
                written += len(block)
                if written > min(info.file_size, limits.max_member_bytes):
                    raise UnsafeArchive(f"member {info.filename!r} inflates past its declared size")
                sink.write(block)

    storage.atomic_write(target, write)
    return written


def safe_extract(zip_path: Path, dest: Path, limits: ExtractLimits = ExtractLimits()) -> list[Path]:
    """Extract a whole archive under dest after inspecting it; every path is re-checked to stay inside dest."""
    dest = Path(dest).resolve()
    written = []
    with zipfile.ZipFile(zip_path) as archive:
        for info in inspect_archive(archive, limits):
            target = (dest / info.filename).resolve()
            if not target.is_relative_to(dest):
                raise UnsafeArchive(f"member {info.filename!r} resolves outside {dest}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            extract_member(archive, info, target, limits)
            written.append(target)
    return written


def read_tracks_table(lines: Iterable[str]) -> dict[int, dict[str, str]]:
    """track_id -> {genre_top, title, artist, licence} from tracks.csv.

    The real file has a three-row header (row 1: table such as "track"/"artist", row 2: column, row 3: "track_id");
    a plain one-row header (track_id, genre_top, title, artist_name, license) is accepted too.
    """
    rows = csv.reader(lines)
    first = next(rows, None)
    if first is None:
        raise ValueError("tracks.csv is empty")
    if first and first[0] == "":
        second, third = next(rows, []), next(rows, [])
        if not third or third[0] != "track_id":
            raise ValueError("tracks.csv: a three-row header must end with a row starting 'track_id'")
        names = [f"{top}.{sub}" if sub else top for top, sub in zip(first, second, strict=False)]
    else:
        names = first
    wanted = {
        "genre_top": ("track.genre_top", "genre_top"),
        "title": ("track.title", "title"),
        "artist": ("artist.name", "artist_name"),
        "licence": ("track.license", "license"),
    }
    columns = {}
    for key, candidates in wanted.items():
        columns[key] = next((names.index(c) for c in candidates if c in names), None)
    if columns["genre_top"] is None:
        raise ValueError("tracks.csv has no genre_top column (looked for track.genre_top and genre_top)")
    table = {}
    for row in rows:
        if not row or not row[0].isdigit():
            continue
        table[int(row[0])] = {k: (row[i] if i is not None and i < len(row) else "") for k, i in columns.items()}
    return table


def _download_archive(fetcher, source: FmaDatasetSource, archive_dir: Path, file_name: str, progress: bool) -> Path:
    url = f"{source.base_url.rstrip('/')}/{file_name}"
    dest = archive_dir / file_name
    sha1 = source.sha1(file_name)
    if dest.exists():
        return dest  # only ever renamed into place after its checksum passed
    fetcher.download(url, dest, content_types=ARCHIVE_TYPES, sha1=sha1, resume=True, progress=progress,
                     max_bytes=source.limits.max_total_bytes)  # fmt: skip
    return dest


def ingest_fma_dataset(
    fetcher: PoliteFetcher, source: FmaDatasetSource, output: Output, progress: bool = True
) -> dict[str, int]:
    counts = {"downloaded": 0, "already_complete": 0, "bytes": 0}
    archive_dir = Path(source.archive_dir) if source.archive_dir else output.root / ".archives"
    wanted = {g.lower() for g in source.genres}
    try:
        metadata_zip = _download_archive(fetcher, source, archive_dir, FMA_ARCHIVES["fma_metadata"][0], progress)
        with zipfile.ZipFile(metadata_zip) as archive:
            members = inspect_archive(archive, source.limits)
            table_info = next((m for m in members if PurePosixPath(m.filename).name == "tracks.csv"), None)
            if table_info is None:
                raise ValueError(f"{metadata_zip.name} holds no tracks.csv")
            with archive.open(table_info) as raw:
                tracks = read_tracks_table(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        subset_name = FMA_ARCHIVES[source.subset][0]
        subset_zip = _download_archive(fetcher, source, archive_dir, subset_name, progress)
    except FetchError as err:
        output.fail(err.url, err.reason, err.detail)
        return counts
    except (UnsafeArchive, ValueError, zipfile.BadZipFile, OSError) as err:
        output.fail(str(archive_dir), type(err).__name__, str(err))
        return counts

    archive_url = f"{source.base_url.rstrip('/')}/{subset_name}"
    try:
        with zipfile.ZipFile(subset_zip) as archive:
            members = inspect_archive(archive, source.limits)
            for info in members:
                match = _TRACK_MEMBER.match(info.filename)
                if not match:
                    continue
                track_id = int(match.group(1))
                meta = tracks.get(track_id, {})
                genre = meta.get("genre_top") or "unknown"
                if wanted and genre.lower() not in wanted:
                    continue
                if (
                    source.max_tracks is not None
                    and counts["downloaded"] + counts["already_complete"] >= source.max_tracks
                ):
                    break
                key = f"{archive_url}#{info.filename}"
                if output.is_complete(output.index.get(key)):
                    counts["already_complete"] += 1
                    continue
                relative = f"{slugify(genre)}/{track_id:06d}.mp3"
                target = output.local_path(relative)
                try:
                    extract_member(archive, info, target, source.limits)
                    check_mp3(target, key)
                except (FetchError, UnsafeArchive, zipfile.BadZipFile, OSError) as err:
                    target.unlink(missing_ok=True)
                    output.fail(key, getattr(err, "reason", type(err).__name__), getattr(err, "detail", str(err)))
                    continue
                entry = track_entry(
                    key,
                    relative,
                    target.stat().st_size,
                    file_digests(target)["sha256"],
                    title=meta.get("title", ""),
                    genre=genre,
                    artist=meta.get("artist", ""),
                    licence=meta.get("licence", ""),
                    track_id=str(track_id),
                )
                output.record(entry)
                counts["downloaded"] += 1
                counts["bytes"] += entry["bytes"]
    except (UnsafeArchive, zipfile.BadZipFile) as err:
        output.fail(archive_url, type(err).__name__, str(err))
    return counts
