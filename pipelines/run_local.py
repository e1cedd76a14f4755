"""`make demo`: run the waveforms pipeline on this machine with kfp.local (SubprocessRunner, no cluster, offline).

Outputs land under local_outputs/: kfp.local writes each task's artifacts to
local_outputs/pipeline_root/<pipeline>-<timestamp>/<task>/<output>, converted shards go to local_outputs/data/<run id>.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

from kfp import local

from pipelines.waveforms_pipeline import build_pipeline, local_options

LOCAL_IMAGE = "waveforms:local-venv"  # kfp.local runs components in this venv; the image string is only a label


def run_demo(
    output_dir: str = "local_outputs", *, clips: int = 40, convert_shards: int = 2, seed: int = 0, **overrides
) -> str:
    """Run the pipeline locally and return the folder of this run's artifacts."""
    output_dir = os.path.abspath(output_dir)
    pipeline_root = os.path.join(output_dir, "pipeline_root")
    os.makedirs(pipeline_root, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    options = local_options(
        LOCAL_IMAGE,
        os.path.join(output_dir, "data"),
        convert_shards=convert_shards,
        source_options={"count": clips, "seed": seed},
        **overrides,
    )
    before = set(glob.glob(os.path.join(pipeline_root, "*")))
    started = time.monotonic()
    build_pipeline(options)()
    runs = sorted(set(glob.glob(os.path.join(pipeline_root, "*"))) - before, key=os.path.getmtime)
    if not runs:
        raise RuntimeError(f"kfp.local finished but wrote no run folder under {pipeline_root}")
    run_dir = runs[-1]
    print(f"\npipeline finished in {time.monotonic() - started:.0f} s; outputs in {run_dir}")
    for page in sorted(glob.glob(os.path.join(run_dir, "*", "page"))):
        print(f"  {os.path.basename(os.path.dirname(page)):<24} file://{page}")
    print("open the pages in a browser: dataset report, training curves, generated audio, sound-space explorers")
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="local_outputs")
    parser.add_argument("--clips", type=int, default=40, help="embedded-dataset clips to make (default %(default)s)")
    parser.add_argument("--convert-shards", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each model (default %(default)s)")
    args = parser.parse_args(argv)
    # a few minutes on a laptop: short windows, a few hundred steps (tests/test_quality.py trains 600 at lr 1e-2)
    longer = {
        "steps": args.steps,
        "batch_size": 4,
        "target_length": 2048,
        "learning_rate": 3e-3,
        "checkpoint_every": 100,
        "eval_every": 100,
        "eval_windows": 32,
        "warmup_steps": 20,
    }
    run_demo(
        args.output_dir,
        clips=args.clips,
        convert_shards=args.convert_shards,
        wavenet_train=longer,
        autoencoder_train=longer,
        tuning_fixed={"batch_size": 4, "target_length": 2048, "learning_rate": 3e-3},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
