"""Do sound spaces sound like their corners? The autoencoder bars of issue 12, over training seeds.

    python -m benchmarks.soundspace_quality [--budget 600] [--seeds 0 1 2] [--config default] [--work DIR]
                                            [--output docs/soundspace_quality.md] [--instruments FILE ...]

Writes the embedded synth dataset (`waveforms synth`, 200 notes) and converts it once, then for each seed trains
`waveforms train --model autoencoder --time-budget BUDGET --seed SEED` (CLI defaults otherwise) and measures
(waveforms/soundspace_quality.py): (a) 4 held-out corners of 4 families, each decoded corner nearer (log-mel) to its own
source than to any other; (b) decoded flatness within 2x of the source's; (c) the centroid along a dark -> bright
2-corner path, Spearman |rho| >= 0.9. The bars are for a 600-s budget on a quiet 2-core machine; a busy machine
trains fewer steps in the same budget, so the table records the steps reached.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.run import machine
from waveforms.tasks import DEFAULT_TRAIN_SETTINGS


def _cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "waveforms.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"waveforms {args[0]} failed: {result.stderr.strip().splitlines()[-3:]}")


def dataset(work: str) -> str:
    data = os.path.join(work, "synth-data")
    if not os.path.exists(os.path.join(data, "manifest.json")):
        _cli("synth", os.path.join(work, "synth-wav"))
        _cli("convert", os.path.join(work, "synth-wav"), data, "--quiet")
    return data


def measure_seed(data: str, work: str, seed: int, budget: float, config: str, temperature: float,
                 instruments: list[str], filters: dict) -> dict:  # fmt: skip
    from waveforms import model_store
    from waveforms.autoencoder import AutoencoderTask
    from waveforms.soundspace_quality import clip_fidelity, measure, recorded_corners

    # the CLI's learning rate and the resolved configuration in the name: a model trained under an earlier default is
    # not reused as this one
    learning_rate = DEFAULT_TRAIN_SETTINGS["autoencoder"]["learning_rate"]
    resolved = json.dumps(AutoencoderTask.load_config(config).to_dict(), sort_keys=True)
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    model = os.path.join(
        work, f"autoencoder-{config.replace('/', '_')}-{digest}-lr{learning_rate:g}-{budget:g}s-seed{seed}"
    )
    if not os.path.exists(os.path.join(model, "config.json")):
        _cli("train", data, model, "--model", "autoencoder", "--config", config, "--time-budget", str(budget),
             "--seed", str(seed), "--no-progress")  # fmt: skip
    with open(os.path.join(model, "metrics.json")) as handle:
        final = json.load(handle)["history"][-1]
    started = time.perf_counter()
    autoencoder = model_store.read(str(model)).require("autoencoder").network()
    result = measure(autoencoder, temperature=temperature, seed=seed, **filters)
    if instruments:  # bar (a) on recorded instruments, decoded as the synth corners are
        sources = recorded_corners(instruments, autoencoder.config.sample_rate)
        fidelity = clip_fidelity(autoencoder, sources, temperature=temperature, seed=seed, **filters)
        result |= {"instrument_nearest_own": fidelity.nearest_own, "instruments": len(instruments),
                   "instrument_margin_db": round(fidelity.wrong_embedding_margin, 2),
                   "instrument_distances_db": fidelity.distances.round(2).tolist()}  # fmt: skip
    return {"seed": seed, "steps": final["step"], "val_bits": round(final["val_bits"], 3), **result,
            "measure_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def table(rows: list[dict], budget: float, config: str, temperature: float, filters: dict) -> str:
    lines = [
        f"Autoencoder `{config}`, `--time-budget {budget:g}`, learning rate "
        f"{DEFAULT_TRAIN_SETTINGS['autoencoder']['learning_rate']:g} (the CLI's), decoded at temperature {temperature:g}, "
        f"pitch filter {filters['pitch_filter']:g}, envelope filter {filters['envelope_filter']:g}; "
        f"{datetime.date.today()}, {machine()}.",
        "Command: `python -m benchmarks.soundspace_quality " + " ".join(sys.argv[1:]) + "`",
        "",
        "| seed | steps | val bits | corners' bits, own / wrong embedding | (a) nearest own (of 4) | "
        "wrong-embedding margin dB | (b) flatness within 2x (decoded / mu-law source) | decoded / float source | "
        "(c) path centroids Hz | rho |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratios = " ".join(f"{d / max(s, 1e-12):.2g}" for d, s in zip(r["decoded_flatness"], r["coded_source_flatness"],
                                                                    strict=True))  # fmt: skip
        to_float = " ".join(f"{d / max(s, 1e-12):.2g}" for d, s in zip(r["decoded_flatness"], r["source_flatness"],
                                                                      strict=True))  # fmt: skip
        lines.append(f"| {r['seed']} | {r['steps']} | {r['val_bits']} | "
                     f"{r['own_embedding_bits']} / {r['wrong_embedding_bits']} | {r['nearest_own']} | "
                     f"{r['wrong_embedding_margin_db']} | {r['flatness_within']} ({ratios}) | {to_float} | "
                     f"{' '.join(map(str, r['path_centroids_hz']))} | {r['path_rho']} |")  # fmt: skip
    if any("instruments" in r for r in rows):
        lines += ["", "Bar (a) on recorded instruments (1 s from each onset): "
                  + "; ".join(f"seed {r['seed']}: {r['instrument_nearest_own']} of {r['instruments']} nearest their own "
                              f"source, wrong-embedding margin {r['instrument_margin_db']} dB" for r in rows)]  # fmt: skip
    passed = all(r["nearest_own"] == r["corners"] for r in rows), all(abs(r["path_rho"]) >= 0.9 for r in rows)
    lines += ["", f"(a) 4 of 4 for every seed: {'yes' if passed[0] else 'no'}; "
                  f"(b) every corner within 2x: {'yes' if all(r['flatness_within'] == r['corners'] for r in rows) else 'no'}; "
                  f"(c) |rho| >= 0.9 for every seed: {'yes' if passed[1] else 'no'}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per seed (default 600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", default="default", help="autoencoder configuration (name or file)")
    parser.add_argument("--temperature", type=float, default=None, help="decoding temperature (default: the CLI's)")
    parser.add_argument("--pitch-filter", type=float, default=None, help="pitch filter strength (default: the CLI's)")
    parser.add_argument("--envelope-filter", type=float, default=None,
                        help="envelope filter strength (default: the CLI's)")  # fmt: skip
    parser.add_argument("--work", default=None, help="folder for the dataset and models (kept; default: a temp dir)")
    parser.add_argument("--output", default=None, help="also write the table (Markdown) here")
    parser.add_argument("--instruments", nargs="+", default=[], metavar="FILE",
                        help="recorded instrument notes: also measure bar (a) with them as the corners")  # fmt: skip
    args = parser.parse_args(argv)
    from waveforms.soundspace import SoundSpaceSpec

    cli = SoundSpaceSpec(corners=(), resolution=2)
    args.temperature = cli.temperature if args.temperature is None else args.temperature
    filters = {
        "pitch_filter": cli.pitch_filter if args.pitch_filter is None else args.pitch_filter,
        "envelope_filter": cli.envelope_filter if args.envelope_filter is None else args.envelope_filter,
    }
    with tempfile.TemporaryDirectory(prefix="soundspace-quality-") as scratch:
        work = args.work or scratch
        os.makedirs(work, exist_ok=True)
        data = dataset(work)
        rows = []
        for seed in args.seeds:
            rows.append(measure_seed(data, work, seed, args.budget, args.config, args.temperature, args.instruments,
                                     filters))  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows, args.budget, args.config, args.temperature, filters)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write("# Sound-space quality\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
