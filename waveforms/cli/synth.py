"""`waveforms synth OUT_DIR`: write the embedded dataset of synthetic notes (waveforms.synth)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from waveforms.synth import DEFAULT_COUNT, FAMILIES, write_dataset


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="directory to write <family>/<name>.wav and metadata.jsonl into")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help=f"number of clips (default {DEFAULT_COUNT})")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes identical files")
    parser.add_argument("--sample-rate", type=int, default=16000, help="Hz (default 16000)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4.0)")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help=f"comma-separated subset of {','.join(FAMILIES)}"
    )


def run(args: argparse.Namespace) -> int:
    families = [family.strip() for family in args.families.split(",") if family.strip()]
    unknown = [family for family in families if family not in FAMILIES]
    if unknown or not families:
        print(
            f"error: --families: unknown {unknown or 'empty list'}; choose from {','.join(FAMILIES)}", file=sys.stderr
        )
        return 2
    if args.count < 1 or args.sample_rate < 8000 or args.seconds <= 0:
        print("error: --count must be >= 1, --sample-rate >= 8000 and --seconds > 0", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = write_dataset(args.out_dir, args.count, args.seed, args.sample_rate, args.seconds, families)
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(rows)} clips to {args.out_dir} ({elapsed:.1f} s); metadata in {Path(args.out_dir) / 'metadata.jsonl'}"
    )
    return 0
