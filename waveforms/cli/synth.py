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
    parser.add_argument("--notes-per-clip", type=int, default=1,
                        help="1: one note per clip (NSynth's shape); more: a melodic phrase of that many notes, each "
                             "ringing into the next (default 1)")  # fmt: skip
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
    bad = [rule for rule, broken in (("--count must be >= 1", args.count < 1),
                                     ("--notes-per-clip must be >= 1", args.notes_per_clip < 1),
                                     ("--sample-rate must be >= 8000", args.sample_rate < 8000),
                                     ("--seconds must be > 0", args.seconds <= 0)) if broken]  # fmt: skip
    if bad:
        print(f"error: {'; '.join(bad)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = write_dataset(
        args.out_dir, args.count, args.seed, args.sample_rate, args.seconds, families, args.notes_per_clip
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(rows)} clips to {args.out_dir} ({elapsed:.1f} s); metadata in {Path(args.out_dir) / 'metadata.jsonl'}"
    )
    return 0
