"""`make bench`: run every benchmark module side by side in one process run and write docs/benchmarks.md.

Each module in MODULES exposes `run() -> list[dict]` with keys name, value, unit, and optionally baseline_name,
baseline_value, target, note. Absolute numbers on 2-core machines are noisy; the ratios to baselines measured in the same
run are what to quote.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

MODULES = [
    "benchmarks.audio",
    "benchmarks.conversion",
    "benchmarks.batching",
    "benchmarks.dataset",
    "benchmarks.training",
    "benchmarks.generation",
    "benchmarks.soundspace",
]


def machine() -> str:
    cpu = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {cpu}, {memory:.0f} GiB, Python {platform.python_version()}, {platform.system()}"


def _fmt(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="docs/benchmarks.md")
    parser.add_argument("--only", nargs="*", help="module names (e.g. generation dataset) to run")
    args = parser.parse_args(argv)
    modules = [m for m in MODULES if not args.only or m.split(".")[-1] in args.only]
    rows, failures = [], []
    started = time.time()
    for name in modules:
        print(f"== {name}", file=sys.stderr, flush=True)
        # a fresh process per module: TensorFlow's thread pools and XLA state are fixed by the first module that uses
        # them (generation sets one thread per op, which only works before any other TensorFlow work)
        code = f"import json, {name} as m; print('BENCH-ROWS ' + json.dumps(m.run()))"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        marker = [line for line in result.stdout.splitlines() if line.startswith("BENCH-ROWS ")]
        if result.returncode != 0 or not marker:
            failures.append(
                f"{name}: exit {result.returncode}: {(result.stderr.strip().splitlines() or ['no output'])[-1]}"
            )
            continue
        for row in json.loads(marker[-1][len("BENCH-ROWS ") :]):
            row["module"] = name.split(".")[-1]
            rows.append(row)
            print(f"   {row['name']}: {_fmt(row['value'])} {row['unit']}", file=sys.stderr, flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        f"Command: `make bench` (`python -m benchmarks.run{' --only ' + ' '.join(args.only) if args.only else ''}`)",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit or 'uncommitted'}",
        f"Machine: {machine()}",
        f"Wall time: {time.time() - started:.0f} s",
        "",
        "Baselines are measured in the same run, side by side; ratios are what to compare across machines.",
        "Model quality on real music (training runs of 10 minutes each, not part of this run): `make bench-quality`",
        "MUSIC=DIR writes docs/benchmarks_quality.md.",
        "",
        "| area | measurement | value | unit | baseline | baseline value | ratio | target | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = row.get("baseline_value")
        ratio = f"{row['value'] / base:.2f}x" if isinstance(base, int | float) and base else ""
        lines.append(
            f"| {row['module']} | {row['name']} | {_fmt(row['value'])} | {row['unit']} | {row.get('baseline_name') or ''} "
            f"| {_fmt(base)} | {ratio} | {_fmt(row.get('target'))} | {row.get('note', '')} |"
        )
    if failures:
        lines += ["", "Not measured:", ""] + [f"- {failure}" for failure in failures]
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
