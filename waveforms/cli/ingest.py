"""`waveforms ingest --source SOURCE --out URI`: bring audio into one folder per dataset (waveforms.ingest)."""

from __future__ import annotations

import argparse
import json
import sys

from waveforms import storage
from waveforms.config import Option, add_options, option_values
from waveforms.ingest import GENRE_FROM, SOURCES, IngestOptions, ingest, summary


def _page_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        pages = int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pages {text!r}: expected N or FIRST-LAST, e.g. 1-5") from None
    if not 1 <= pages[0] <= pages[1]:
        raise argparse.ArgumentTypeError(f"--pages {text!r}: need 1 <= FIRST <= LAST")
    return pages


def _checksum(text: str) -> tuple[str, str]:
    name, sep, sha1 = text.partition("=")
    if not sep or len(sha1) != 40:
        raise argparse.ArgumentTypeError(f"--sha1 {text!r}: expected FILE.zip=<40 hex digits>")
    return name, sha1.lower()


# flags for IngestOptions fields (type and default from the field), in three runs around the flags that parse
SITE_OPTIONS = (
    Option("base_url", "fma/fma-dataset: site or mirror base URL"),
    Option("subset", "fma-dataset: fma_small|fma_medium|fma_large|fma_full"),
)
FETCH_OPTIONS = (
    Option("archive_dir", "fma-dataset: where archives are kept (default <out>/.archives)"),
    Option("input", "urls: the URL list file; dir: the folder or object-storage prefix"),
    Option(
        "genre_from",
        "dir: the genre label training uses, the first sub-folder or the genre tag (songs without one "
        "keep their folder)",
        choices=GENRE_FROM,
    ),  # fmt: skip
    Option("count", "synth: number of clips"),
    Option("seed", "synth: random seed"),
    Option("notes_per_clip", "synth: notes per clip (1: isolated notes; more: melodic phrases)"),
    Option("max_tracks", "stop once the index holds this many tracks"),
    Option("requests_per_second", "requests per second per host, at most", flag="--rate"),
    Option("connect_timeout", "seconds to wait for a connection"),
    Option("read_timeout", "seconds to wait for data"),
    Option("max_retries", "retries of a failed request (backoff doubles)", flag="--retries"),
    Option("backoff_base", "first retry delay in seconds (doubles)", flag="--backoff"),
    Option("max_file_mb", "skip downloads larger than this (MB)"),
)
OUTPUT_OPTIONS = (
    Option("allow_loopback", "permit 127.0.0.1 (tests only)"),
    Option("staging_dir", "remote --out: local staging folder"),
    Option("progress", "no progress bar on stderr", flag="--no-progress", negate=True),
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="where the songs come from")
    parser.add_argument("--out", required=True, help="output folder, s3://bucket/prefix or minio://bucket/prefix")
    parser.add_argument("--genre", action="append", default=[], help="fma: genre to list (repeatable; commas ok); "
                        "fma-dataset: keep only these top genres")  # fmt: skip
    parser.add_argument("--pages", type=_page_range, default=(1, 1), help="fma: page range, N or FIRST-LAST")
    add_options(parser, IngestOptions, SITE_OPTIONS)
    parser.add_argument("--sha1", type=_checksum, action="append", default=[], help="fma-dataset mirror: FILE=SHA1")
    add_options(parser, IngestOptions, FETCH_OPTIONS)
    parser.add_argument("--allow-host", action="append", default=[], help="extra host that may be fetched")
    add_options(parser, IngestOptions, OUTPUT_OPTIONS)


def run(args: argparse.Namespace) -> int:
    genres = tuple(g.strip() for text in args.genre for g in text.split(",") if g.strip())
    try:
        result = ingest(
            args.source, args.out, genres=genres, first_page=args.pages[0], last_page=args.pages[1],
            checksums=tuple(args.sha1), allow_hosts=tuple(args.allow_host),
            **option_values(args, SITE_OPTIONS + FETCH_OPTIONS + OUTPUT_OPTIONS),
        )  # fmt: skip
    except (ValueError, OSError, storage.StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result), file=sys.stderr)
    print(json.dumps({"tracks": result.tracks, "downloaded": result.downloaded, "failures": len(result.failures),
                      "index": result.index_uri}))  # fmt: skip
    # Item failures are reported, not fatal; a run that ends with nothing ingested is.
    return 1 if result.tracks == 0 and result.failures else 0
