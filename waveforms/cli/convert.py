"""`waveforms convert IN_URI OUT_URI` (or `--merge OUT_URI`): audio files to mu-law TFRecord shards."""

from __future__ import annotations

import argparse
import sys

from waveforms import storage
from waveforms.config import Option, add_options, from_options
from waveforms.convert import ConvertConfig, convert
from waveforms.manifest import NothingConvertedError, merge_parts

# flags for ConvertConfig fields: type and default from the field
OPTIONS = (
    Option("sample_rate", "target rate in Hz (default %(default)s)"),
    Option("segment_seconds", "record length (default %(default)s s)"),
    Option("shard_megabytes", "shard size in MiB (default %(default)s)", flag="--shard-mb"),
    Option("validation_fraction", "share of songs held out (default %(default)s)"),
    Option("silence_threshold_db", "peak below this = silent (default %(default)s dBFS)"),
    Option("drop_silent", "keep (but flag) silent songs instead of dropping them", flag="--keep-silent", negate=True),
    Option("workers", "concurrent decodes (default %(default)s)"),
    Option("shard_index", "this task's index when fanned out over --num-shards tasks"),
    Option("num_shards", "number of convert tasks (static fan-out)"),
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "uris",
        nargs="+",
        metavar="URI",
        help="IN_URI OUT_URI (folders or s3://, minio:// prefixes); with --merge only OUT_URI",
    )
    add_options(parser, ConvertConfig, OPTIONS)
    parser.add_argument(
        "--merge", action="store_true", help="join the part manifests of --num-shards tasks under OUT_URI"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    if args.merge:
        if len(args.uris) != 1:
            raise SystemExit("convert --merge takes exactly one URI: OUT_URI")
        try:
            merged, _ = merge_parts(args.uris[0], args.num_shards)
        except (ValueError, OSError, storage.StorageError, NothingConvertedError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"merged {args.num_shards} parts: {merged['totals']['songs']} songs", file=sys.stderr)
        return 0
    if len(args.uris) != 2:
        raise SystemExit("convert takes IN_URI OUT_URI")
    config = from_options(ConvertConfig, args, OPTIONS)
    try:
        convert(args.uris[0], args.uris[1], config, progress=not args.quiet)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (NothingConvertedError, storage.StorageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
