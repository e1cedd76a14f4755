"""`waveforms ingest --source SOURCE --out URI`: bring audio into one folder (or object-storage prefix) per dataset.

Sources: `fma` (the website by genre and page range), `fma-dataset` (the FMA paper's archives), `urls` (a file of
URLs), `dir` (a local folder or object-storage prefix) and `synth` (the embedded generator). Every source writes
<out>/<genre>/<file> plus <out>/index.jsonl (title, artist, album, genre, licence, source URL, file, bytes, sha256 per
track; `dir` also records what the file's tags and its names said) and <out>/failures.jsonl. Re-running resumes: what the index lists and the output holds is not fetched again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from waveforms import config as configuration
from waveforms import storage
from waveforms.audio import AUDIO_EXTENSIONS, read_tags
from waveforms.scrape import FAILURES_NAME, INDEX_NAME, Failure, Output, join_uri, slugify, track_entry
from waveforms.scrape.http import FetchPolicy, PoliteFetcher, file_digests

SOURCES = ("fma", "fma-dataset", "urls", "dir", "synth")
GENRE_FROM = ("folder", "tag")


@dataclass(frozen=True)
class IngestOptions:
    genres: tuple[str, ...] = ()  # fma: genres to list (required); fma-dataset: top-genre filter (empty: all)
    first_page: int = 1  # fma page range, inclusive
    last_page: int = 1
    base_url: str | None = None  # fma / fma-dataset: site or mirror (default: the real one)
    subset: str = "fma_small"  # fma-dataset: fma_small | fma_medium | fma_large | fma_full
    checksums: tuple[tuple[str, str], ...] = ()  # fma-dataset: (file name, sha1) for a mirror's archives
    archive_dir: str | None = None  # fma-dataset: where archives and their .part files are kept
    input: str | None = None  # urls: the URL list file; dir: the folder or s3:// / minio:// prefix
    genre_from: str = "folder"  # dir: the genre label training uses: "folder" (first sub-folder) or "tag" (else folder)
    count: int = 50  # synth: number of clips
    seed: int = 0  # synth
    notes_per_clip: int = 1  # synth: 1 = isolated notes; more = phrases of that many notes (waveforms.synth)
    max_tracks: int | None = None  # fma / fma-dataset: stop once the index holds this many
    requests_per_second: float = 1.0  # per host; at most
    connect_timeout: float = 10.0  # seconds
    read_timeout: float = 30.0  # seconds
    max_retries: int = 4
    backoff_base: float = 1.0  # seconds, doubled per retry
    retry_after_cap: float = 300.0  # seconds; a longer Retry-After fails the item
    max_file_mb: float = 512.0  # per downloaded file
    allow_hosts: tuple[str, ...] = ()  # extra hosts (e.g. a CDN the site links to)
    allow_loopback: bool = False  # only for tests against a server on 127.0.0.1
    user_agent: str | None = None
    staging_dir: str | None = None  # remote outputs: local staging folder (default: a temp folder per output URI)
    progress: bool = True


@dataclass(frozen=True)
class IngestResult:
    source: str
    out: str
    downloaded: int  # new this run
    already_complete: int  # found complete in the index and output, not fetched again
    bytes: int  # new bytes this run
    failures: tuple[Failure, ...]
    skipped: tuple[Failure, ...]  # not failures: e.g. non-audio files in a dir source
    index_uri: str

    @property
    def tracks(self) -> int:
        return self.downloaded + self.already_complete


def _policy(options: IngestOptions, hosts: tuple[str, ...]) -> FetchPolicy:
    extra = {} if options.user_agent is None else {"user_agent": options.user_agent}
    return FetchPolicy(
        allowed_hosts=tuple(dict.fromkeys(h.lower() for h in hosts + options.allow_hosts if h)),
        requests_per_second=options.requests_per_second,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        max_retries=options.max_retries,
        backoff_base=options.backoff_base,
        retry_after_cap=options.retry_after_cap,
        max_file_bytes=int(options.max_file_mb * 1024 * 1024),
        allow_loopback=options.allow_loopback,
        **extra,
    )


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def check_options(source: str, options: dict) -> IngestOptions:
    """The IngestOptions for a source and its options (KFP's `source_options`); ValueError names what is wrong."""
    known = {f.name for f in dataclasses.fields(IngestOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"ingest: unknown option(s) {unknown}; valid: {sorted(known)}")
    if source not in SOURCES:
        raise ValueError(f"ingest: --source {source!r} is not one of {SOURCES}")
    opts = IngestOptions(**configuration.coerce_fields(IngestOptions, options, "ingest option"))
    if opts.genre_from not in GENRE_FROM:
        raise ValueError(f"ingest: genre_from must be one of {GENRE_FROM}, got {opts.genre_from!r}")
    if opts.count < 1 or opts.notes_per_clip < 1:
        raise ValueError(f"ingest: count and notes_per_clip must be >= 1, got {opts.count} and {opts.notes_per_clip}")
    if source == "urls" and not opts.input:
        raise ValueError("ingest --source urls needs --input FILE (one URL per line)")
    if source == "dir" and not opts.input:
        raise ValueError("ingest --source dir needs --input DIR (a local folder or s3:// / minio:// prefix)")
    if source == "dir" and not storage.is_remote(opts.input):
        if not Path(storage.parse(opts.input)[2]).is_dir():
            raise ValueError(f"ingest --input {opts.input}: not a folder")  # before the output folder is made
    return opts


def ingest(source: str, out: str, **options) -> IngestResult:
    """Library entry point; options are IngestOptions fields. Bad options raise ValueError before anything is fetched."""
    opts = check_options(source, options)
    storage.check_writable(out)  # location, credentials, endpoint, TLS: before the first download
    output = Output(out, opts.staging_dir)
    counts = _run_source(source, opts, output)
    output.finish()
    return IngestResult(
        source=source, out=str(out), downloaded=counts["downloaded"], already_complete=counts["already_complete"],
        bytes=counts["bytes"], failures=tuple(output.failures), skipped=tuple(output.skipped),
        index_uri=join_uri(out, INDEX_NAME),
    )  # fmt: skip


def _run_source(source: str, opts: IngestOptions, output: Output) -> dict[str, int]:
    if source == "fma":
        from waveforms.scrape.fma import FMA_BASE_URL, FMA_HOSTS, FmaSource, scrape_fma

        fma = FmaSource(tuple(opts.genres), opts.first_page, opts.last_page, opts.base_url or FMA_BASE_URL,
                        max_tracks=opts.max_tracks)  # fmt: skip
        hosts = FMA_HOSTS if opts.base_url is None else (_host(fma.base_url),)
        with PoliteFetcher(_policy(opts, hosts)) as fetcher:
            return scrape_fma(fetcher, fma, output, opts.progress)
    if source == "fma-dataset":
        from waveforms.scrape.fma_dataset import FMA_DATASET_URL, FmaDatasetSource, ingest_fma_dataset

        dataset = FmaDatasetSource(
            subset=opts.subset, genres=tuple(opts.genres), base_url=opts.base_url or FMA_DATASET_URL,
            checksums=dict(opts.checksums), archive_dir=opts.archive_dir, max_tracks=opts.max_tracks,
        )  # fmt: skip
        with PoliteFetcher(_policy(opts, (_host(dataset.base_url),))) as fetcher:
            return ingest_fma_dataset(fetcher, dataset, output, opts.progress)
    if source == "urls":
        from waveforms.scrape.urls import hosts_of, read_url_list, scrape_urls

        items = read_url_list(opts.input)
        with PoliteFetcher(_policy(opts, hosts_of(items))) as fetcher:
            return scrape_urls(fetcher, items, output, opts.progress)
    if source == "dir":
        return collect_dir(opts.input, output, genre_from=opts.genre_from)
    return write_synth(opts.count, opts.seed, output, opts.notes_per_clip)


def collect_dir(input_uri: str, output: Output, genre_from: str = "folder") -> dict[str, int]:
    """Copy every audio file under a folder or prefix, keeping its relative path. Title, artist, album, genre and
    licence come from the file's tags where present, else from its names (first folder = genre; file name = title);
    the index records both (`from_tags`, `from_names`). genre_from="tag" labels a song by its genre tag."""
    from waveforms.scrape import sniff_audio_format

    counts = {"downloaded": 0, "already_complete": 0, "bytes": 0}
    prefix = str(input_uri).rstrip("/")
    output_root = output.root.resolve()
    for uri in storage.list_files(input_uri):
        relative_source = uri[len(prefix) :].lstrip("/\\").replace("\\", "/")
        parts = relative_source.split("/")
        try:
            if not storage.is_remote(uri) and Path(uri).resolve().is_relative_to(output_root):
                continue  # the output lives inside the input: never ingest our own files
        except (OSError, RuntimeError) as err:  # a symlink loop: RuntimeError from resolve()
            output.fail(uri, "NotAFileError", str(err))
            continue
        suffix = Path(parts[-1]).suffix.lower()
        if suffix not in AUDIO_EXTENSIONS:
            output.skip(uri, "not-audio", f"suffix {suffix or '(none)'!r}")
            continue
        try:
            storage.check_readable_file(uri)  # FIFOs, devices, dangling links: item failures, never opened
        except storage.StorageError as err:
            output.fail(uri, type(err).__name__, str(err))
            continue
        if output.is_complete(output.index.get(uri)):
            counts["already_complete"] += 1
            continue
        relative = "/".join([slugify(p) for p in parts[:-1]] + [slugify(Path(parts[-1]).stem) + suffix])
        if len(parts) == 1:
            relative = "unknown/" + relative
        target = output.local_path(relative)
        try:
            if storage.is_remote(uri):
                target.parent.mkdir(parents=True, exist_ok=True)
                storage.download_file(uri, str(target))
            else:
                output.copy_in(Path(uri), relative)
            with open(target, "rb") as handle:
                if sniff_audio_format(handle.read(16)) is None:
                    target.unlink()
                    output.skip(uri, "not-audio", "content does not start like any known audio format")
                    continue
        except (OSError, storage.StorageError) as err:
            target.unlink(missing_ok=True)
            output.fail(uri, type(err).__name__, str(err))
            continue
        from_names = {"title": Path(parts[-1]).stem, "genre": parts[0] if len(parts) > 1 else "unknown"}
        from_tags = read_tags(target)
        entry = track_entry(
            uri, relative, target.stat().st_size, file_digests(target)["sha256"],
            title=from_tags.get("title") or from_names["title"],
            genre=from_tags.get("genre") if genre_from == "tag" and from_tags.get("genre") else from_names["genre"],
            artist=from_tags.get("artist", ""), licence=from_tags.get("licence", ""), album=from_tags.get("album", ""),
            from_names=from_names, from_tags=from_tags,
        )  # fmt: skip
        output.record(entry)
        counts["downloaded"] += 1
        counts["bytes"] += entry["bytes"]
    return counts


def write_synth(count: int, seed: int, output: Output, notes_per_clip: int = 1) -> dict[str, int]:
    from waveforms.synth import write_dataset

    counts = {"downloaded": 0, "already_complete": 0, "bytes": 0}
    for row in write_dataset(output.root, count=count, seed=seed, notes_per_clip=notes_per_clip):
        path = output.local_path(row["file"])
        entry = track_entry(
            f"synth:seed={seed}:{row['name']}",
            row["file"],
            path.stat().st_size,
            file_digests(path)["sha256"],
            title=row["name"],
            genre=row.get("family", "unknown"),
            artist="waveforms.synth",
            licence="generated",
        )
        output.record(entry)
        counts["downloaded"] += 1
        counts["bytes"] += entry["bytes"]
    output.publish("metadata.jsonl")
    return counts


def summary(result: IngestResult) -> str:
    lines = [
        f"ingest {result.source} -> {result.out}: {result.tracks} tracks ({result.downloaded} new, "
        f"{result.already_complete} already complete), {result.bytes / 1e6:.1f} MB new; "
        f"{len(result.failures)} failures, {len(result.skipped)} skipped; index {result.index_uri}"
    ]
    lines += [f"  failed  {f.item}: {f.reason}" + (f" ({f.detail})" if f.detail else "") for f in result.failures]
    lines += [f"  skipped {f.item}: {f.reason}" + (f" ({f.detail})" if f.detail else "") for f in result.skipped]
    return "\n".join(lines)


__all__ = ["IngestOptions", "IngestResult", "ingest", "summary", "FAILURES_NAME"]
