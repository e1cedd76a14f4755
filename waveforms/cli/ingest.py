"""`waveforms ingest --source SOURCE --out URI`: bring audio into one folder per dataset (waveforms.ingest)."""

from __future__ import annotations

import argparse
import json
import sys

from waveforms import storage
from waveforms.ingest import GENRE_FROM, SOURCES, ingest, summary


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


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="where the songs come from")
    parser.add_argument("--out", required=True, help="output folder, s3://bucket/prefix or minio://bucket/prefix")
    parser.add_argument("--genre", action="append", default=[], help="fma: genre to list (repeatable; commas ok); "
                        "fma-dataset: keep only these top genres")  # fmt: skip
    parser.add_argument("--pages", type=_page_range, default=(1, 1), help="fma: page range, N or FIRST-LAST")
    parser.add_argument("--base-url", help="fma/fma-dataset: site or mirror base URL")
    parser.add_argument("--subset", default="fma_small", help="fma-dataset: fma_small|fma_medium|fma_large|fma_full")
    parser.add_argument("--sha1", type=_checksum, action="append", default=[], help="fma-dataset mirror: FILE=SHA1")
    parser.add_argument("--archive-dir", help="fma-dataset: where archives are kept (default <out>/.archives)")
    parser.add_argument("--input", help="urls: the URL list file; dir: the folder or object-storage prefix")
    parser.add_argument("--genre-from", default="folder", choices=GENRE_FROM,
                        help="dir: the genre label training uses, the first sub-folder or the genre tag (songs without "
                             "one keep their folder)")  # fmt: skip
    parser.add_argument("--count", type=int, default=50, help="synth: number of clips")
    parser.add_argument("--seed", type=int, default=0, help="synth: random seed")
    parser.add_argument("--max-tracks", type=int, help="stop once the index holds this many tracks")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second per host, at most")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for a connection")
    parser.add_argument("--read-timeout", type=float, default=30.0, help="seconds to wait for data")
    parser.add_argument("--retries", type=int, default=4, help="retries of a failed request (backoff doubles)")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--max-file-mb", type=float, default=512.0, help="skip downloads larger than this (MB)")
    parser.add_argument("--allow-host", action="append", default=[], help="extra host that may be fetched")
    parser.add_argument("--allow-loopback", action="store_true", help="permit 127.0.0.1 (tests only)")
    parser.add_argument("--staging-dir", help="remote --out: local staging folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run(args: argparse.Namespace) -> int:
    genres = tuple(g.strip() for text in args.genre for g in text.split(",") if g.strip())
    try:
        result = ingest(
            args.source, args.out, genres=genres, first_page=args.pages[0], last_page=args.pages[1],
            base_url=args.base_url, subset=args.subset, checksums=tuple(args.sha1), archive_dir=args.archive_dir,
            input=args.input, genre_from=args.genre_from, count=args.count, seed=args.seed, max_tracks=args.max_tracks,
            requests_per_second=args.rate, connect_timeout=args.connect_timeout, read_timeout=args.read_timeout,
            max_retries=args.retries, backoff_base=args.backoff, max_file_mb=args.max_file_mb,
            allow_hosts=tuple(args.allow_host), allow_loopback=args.allow_loopback, staging_dir=args.staging_dir,
            progress=not args.no_progress,
        )  # fmt: skip
    except (ValueError, OSError, storage.StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(result), file=sys.stderr)
    print(json.dumps({"tracks": result.tracks, "downloaded": result.downloaded, "failures": len(result.failures),
                      "index": result.index_uri}))  # fmt: skip
    # Item failures are reported, not fatal; a run that ends with nothing ingested is.
    return 1 if result.tracks == 0 and result.failures else 0
