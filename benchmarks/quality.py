"""`make bench-quality`: what the models are worth on real music, measured the honest way.

    python -m benchmarks.quality --music DIR [--music DIR ...] [--budget 600 | --steps N] [--seeds 0 1 ...]
                                 [--train-args "--input-noise 1"] [--output docs/benchmarks_quality.md]

For each collection (a folder of songs in genre folders) and training seed (two by default: one seed proves nothing):
`waveforms convert` (the CLI defaults), `waveforms train` of `small` (the CLI defaults and `--time-budget 600`, the
issue's bar, or `--steps N`), then
  - `--train-args` adds options to every `waveforms train` (a recipe to compare against the defaults; the table
    names it),
  - the table: uniform / unigram / bigram / trigram / WaveNet bits per sample on the held-out windows (metrics.json),
  - the same model's NLL over EVERY held-out position with a full receptive field (run record by record, in chunks):
    the printed val_bits must agree with it within 0.1 bits,
  - `waveforms generate MODEL out.wav --seconds 10 --batch 3` with the CLI defaults, from the primer, from silence
    (`--from-silence`) and from 1 s of the first held-out song (`--seed-audio`), and the audio checks' verdicts: clips
    whose every 1-s window passes, windows that pass, and their periodicity beside the held-out music's,
  - beside them the same verdicts on the held-out music itself (consecutive 10-s clips of every held-out record, after
    the mu-law round trip): what real music scores, the ceiling for the generated clips.
The default collections are the free game soundtracks Debian ships (drascula-music, hyperrogue-music); the collections
are never committed: they are the truth the synthetic notes in the tests cannot tell.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks.run import machine
from waveforms.manifest import iter_segments, load_manifest

DEFAULT_COLLECTIONS = ("/usr/share/scummvm/drascula/audio", "/usr/share/hyperrogue/music")
CHUNK = 32768  # scored positions per forward pass of the full-evaluation


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "waveforms.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:1])} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result


def full_held_out_bits(dataset_uri: str, model_uri: str) -> tuple[float, int]:
    """Mean NLL in bits over every held-out position that has a full receptive field of context; -> (bits, count)."""
    import tensorflow as tf

    from waveforms import output_head
    from waveforms.generate import load_model

    model, config = load_model(model_uri)
    field = config.receptive_field

    @tf.function(jit_compile=True, reduce_retracing=True)
    def nats(x, y):  # (1, L) inputs, (1, L) targets -> sum of NLL over the last L - field + 1 positions
        outputs = model({"audio": x})[:, field - 1 :]
        return tf.reduce_sum(output_head.nll(outputs, y[:, field - 1 :], config.output_mixtures,
                                             config.quantization_channels))  # fmt: skip

    manifest_uri = os.path.join(dataset_uri, "manifest.json")
    manifest = load_manifest(manifest_uri)
    total, count = 0.0, 0
    for segment in iter_segments(manifest, manifest_uri, "validation"):
        codes = np.frombuffer(segment.audio, dtype=np.uint8).astype(np.int32)
        for start in range(0, codes.size - field, CHUNK):  # scored targets codes[start + field : ...]
            piece = codes[start : start + field + CHUNK]
            if piece.size < field + 1:
                break
            x, y = piece[None, :-1], piece[None, 1:]
            total += float(nats(tf.constant(x), tf.constant(y)))
            count += x.shape[1] - field + 1
    return total / count / math.log(2), count


CLIPS = 3  # sampling seeds per start
STARTS = ("primer", "silence", "held-out song")


def seed_clip(data: str, collection: str, work: str) -> str:
    """1 s of the first held-out song (from 60 s in, or its middle if shorter), as the generator's --seed-audio."""
    from waveforms import audio

    manifest = json.load(open(os.path.join(data, "manifest.json")))
    song, rate = sorted(manifest["held_out"]["songs"])[0], int(manifest["sample_rate"])
    x = audio.decode(os.path.join(collection, song), rate)
    start = min(60 * rate, max(0, len(x) // 2 - rate // 2))
    path = os.path.join(work, f"{os.path.basename(collection.rstrip('/'))}-seed-clip.wav")
    audio.write_wav(path, x[start : start + rate], rate)
    return path


def windows_passing(verdict: str) -> int:
    """1-s windows of a 10-s clip that pass, from a verdict like "noise-like in 3 of 10 s; silent in 1 of 10 s"; none
    when a problem fails the whole clip (e.g. "monotonous (...)")."""
    from waveforms import audio_checks

    failing = sum(int(n) for n in re.findall(r"in (\d+) of 10 s", verdict))
    return max(0, audio_checks.passing_windows(verdict.split("; "), 10, failing))


def held_out_clips(data: str) -> dict:
    """The audio checks on the held-out split itself, cut into consecutive 10-s clips: the generated clips' ceiling."""
    from waveforms import audio, audio_checks

    manifest_uri = os.path.join(data, "manifest.json")
    manifest = load_manifest(manifest_uri)
    rate, profile = int(manifest["sample_rate"]), audio_checks.DataProfile.from_dict(manifest["statistics"])
    checks = []
    for segment in iter_segments(manifest, manifest_uri, "validation"):
        x = audio.mu_law_decode(np.frombuffer(segment.audio, dtype=np.uint8))
        for start in range(0, x.size - 10 * rate + 1, 10 * rate):
            checks.append(audio_checks.check_clip(x[start : start + 10 * rate], rate, profile))
    periodicity = float(np.median([check.median_periodicity for check in checks])) if checks else float("nan")
    return {"clips_ok": sum(check.ok for check in checks), "clips": len(checks),
            "windows_ok": sum(check.passing_windows for check in checks), "periodicity": periodicity,
            "monotonous": sum(check.monotonous for check in checks)}  # fmt: skip


def sounding_periodicity(paths: list[str], rate: int) -> float:
    """Median periodicity of the clips' sounding 1-s windows (spectral.periodicity: noise 0.38-0.46, a held pitch ~1)."""
    from waveforms import audio, audio_checks

    values = []
    for path in paths:
        measures = audio_checks.measure(audio.decode(path, rate, normalize=False), rate)
        values += list(measures.periodicity[measures.rms_dbfs > audio_checks.SILENCE_DBFS])
    return float(np.median(values)) if values else 0.0


def generation(model: str, work: str, tag: str, start: str, seed_audio: str, rate: int) -> dict:
    flags = {"primer": [], "silence": ["--from-silence"], "held-out song": ["--seed-audio", seed_audio]}[start]
    clip = os.path.join(work, f"{tag}-{start.replace(' ', '-')}.wav")
    generated = _cli("generate", model, clip, "--seconds", "10", "--batch", str(CLIPS), *flags, "--no-progress")
    lines = [line.removeprefix("check ").split(": ", 1) for line in generated.stderr.splitlines()
             if line.startswith("check ")]  # fmt: skip
    verdicts = [verdict for _, verdict in lines]
    return {"clips_ok": sum(v == "ok" for v in verdicts), "clips": len(verdicts),
            "windows_ok": sum(windows_passing(v) for v in verdicts), "verdicts": verdicts,
            "monotonous": sum("monotonous" in v for v in verdicts),
            "periodicity": sounding_periodicity([path for path, _ in lines], rate)}  # fmt: skip


def measure(collection: str, seed: int, steps: int | None, budget: float, work: str, train_args: list[str]) -> dict:

    name = os.path.basename(collection.rstrip("/")) or collection
    data = os.path.join(work, f"{name}-data")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        _cli("convert", collection, data, "--quiet")
    recipe = re.sub(r"[^A-Za-z0-9.]+", "-", " ".join(train_args)).strip("-")
    model = os.path.join(work, f"{name}-small-seed{seed}" + (f"-{recipe}" if recipe else ""))
    length = ["--steps", str(steps)] if steps else ["--time-budget", f"{budget:g}"]
    began = time.perf_counter()
    _cli("train", data, model, *length, "--seed", str(seed), *train_args, "--no-progress")
    train_seconds = time.perf_counter() - began
    metrics = json.load(open(os.path.join(model, "metrics.json")))
    final, baselines = metrics["final"], metrics["baselines"]
    began = time.perf_counter()
    full_bits, positions = full_held_out_bits(data, model)
    full_seconds = time.perf_counter() - began
    seed_audio = seed_clip(data, collection, work)
    manifest = json.load(open(os.path.join(data, "manifest.json")))
    rate = int(manifest["sample_rate"])
    clips = {start: generation(model, work, f"{name}-seed{seed}", start, seed_audio, rate) for start in STARTS}
    return {
        "collection": name, "recipe": " ".join(train_args) or "defaults", "seed": seed, "steps": final["step"], "train_seconds": round(train_seconds),
        "songs": manifest["totals"]["songs"], "hours": manifest["totals"]["hours"],
        "held_out_songs": len(manifest["held_out"]["songs"]), "held_out_fraction": manifest["held_out"]["fraction"],
        "data_periodicity_p5": (manifest["statistics"].get("periodicity") or {}).get("p5", float("nan")),
        **{name: baselines[name] for name in ("uniform", "unigram", "bigram", "trigram")},
        "val_bits": final["val_bits"], "val_bits_se": final["val_bits_se"], "eval_windows": final["eval_windows"],
        "full_bits": full_bits, "full_positions": positions, "full_seconds": round(full_seconds),
        "generation": clips, "held_out_clips": held_out_clips(data),
    }  # fmt: skip


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| collection | training options | seed | steps | train s | held-out songs (% audio) | uniform | unigram | bigram | trigram | "
        "WaveNet val_bits ± se (windows) | all held-out positions | difference | below trigram | "
        + " | ".join(f"10-s clips from {start}: ok (windows, monotonous)" for start in STARTS)
        + " | the held-out music's own 10-s clips: ok (windows, monotonous) | periodicity: generated (primer / silence / song), "
        "held-out music, the data's 5th percentile |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * (len(STARTS) + 2),
    ]
    for r in rows:
        lines.append(
            f"| {r['collection']} ({r['songs']} songs, {60 * r['hours']:.0f} min) | {r['recipe']} | {r['seed']} | {r['steps']} | "
            f"{r['train_seconds']} | {r['held_out_songs']} ({100 * r['held_out_fraction']:.1f}%) | {r['uniform']:.2f} | "
            f"{r['unigram']:.3f} | {r['bigram']:.3f} | {r['trigram']:.3f} | {r['val_bits']:.3f} ± "
            f"{r['val_bits_se']:.3f} ({r['eval_windows']}) | {r['full_bits']:.3f} ({r['full_positions']:,}) | "
            f"{r['val_bits'] - r['full_bits']:+.3f} | {r['trigram'] - r['val_bits']:+.3f} | "
            + " | ".join(
                f"{g['clips_ok']}/{g['clips']} ({g['windows_ok']}/{10 * g['clips']}, {g['monotonous']})"
                for g in [*r["generation"].values(), r["held_out_clips"]]
            )
            + " | "
            + " / ".join(f"{g['periodicity']:.2f}" for g in r["generation"].values())
            + f", {r['held_out_clips']['periodicity']:.2f}, {r['data_periodicity_p5']:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--music", action="append", help="a collection folder (repeatable); default: Debian's")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per run (default %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of a time budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds (default 0 1)")
    parser.add_argument(
        "--train-args", default="", help='more `waveforms train` options for every run, e.g. "--input-noise 1"'
    )
    parser.add_argument("--work", default="", help="folder for datasets and models (default: a temporary one)")
    parser.add_argument(
        "--output", default="docs/benchmarks_quality.md", help="the Markdown table (default %(default)s)"
    )
    args = parser.parse_args(argv)
    train_args = shlex.split(args.train_args)
    if any(arg in ("--steps", "--time-budget", "--seed") or arg.startswith(("--steps=", "--time-budget=", "--seed="))
           for arg in train_args):  # fmt: skip
        print("error: --train-args cannot set --steps, --time-budget or --seed: use --steps, --budget, --seeds",
              file=sys.stderr)  # fmt: skip
        return 2
    collections = args.music or [path for path in DEFAULT_COLLECTIONS if os.path.isdir(path)]
    if not collections:
        print("error: no music: pass --music DIR, or apt-get install drascula-music hyperrogue-music", file=sys.stderr)
        return 2
    work = args.work or tempfile.mkdtemp(prefix="waveforms-quality-")
    rows = []
    for collection in collections:
        for seed in args.seeds:
            print(f"== {collection} seed {seed}", file=sys.stderr, flush=True)
            rows.append(measure(collection, seed, args.steps, args.budget, work, train_args))
            print("\n".join(table(rows[-1:])), file=sys.stderr, flush=True)
    lines = [
        "# Quality on real music",
        "",
        f"Command: `python -m benchmarks.quality {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; machine: {machine()}",
        "",
        "Bits per 8-bit mu-law sample on held-out songs. Baselines are count models fitted on the training split and",
        "scored on the same evaluation windows as the WaveNet; 'all held-out positions' is the same model evaluated on",
        "every held-out sample with a full receptive field (what val_bits estimates). Clips: 10-s clips (CLI defaults,",
        f"{CLIPS} sampling seeds per start) whose every 1-s window passes the audio checks, and the windows that pass;",
        "then the held-out music itself through the same checks (its flatness limit is the data's 95th percentile and",
        "its periodicity limit the 5th, so real music fails a few windows too). Periodicity: the median over sounding",
        "1-s windows (spectral.periodicity; white noise 0.38, brown noise 0.46, a held pitch near 1).",
        "",
        *table(rows),
    ]
    with open(args.output, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
