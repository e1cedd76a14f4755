"""`waveforms tune`: write (or check) the Katib Experiment, or run the local search. Parses and calls waveforms.tuning;
the Experiment's path is chosen here (a flag, default relative to the current folder), never by the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from waveforms.tuning import katib, local

# The repository's copy when run from its root (the Makefile passes it explicitly; `make manifests-check`).
EXPERIMENT_FILE = "manifests/katib/experiment.yaml"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tune_command", metavar="ACTION", required=True)
    write = sub.add_parser("write-experiment", help="render the Katib Experiment from the search space")
    write.add_argument(
        "--output",
        type=Path,
        default=Path(EXPERIMENT_FILE),
        help=f"where to write the Experiment (default {EXPERIMENT_FILE}, relative to the current folder)",
    )
    write.add_argument("--image", default=katib.IMAGE_PLACEHOLDER, help="GPU image with an immutable tag")
    write.add_argument(
        "--algorithm",
        default=katib.DEFAULT_ALGORITHM,
        choices=katib.ALGORITHMS,
        help=f"Katib search (default {katib.DEFAULT_ALGORITHM})",
    )
    write.add_argument("--check", action="store_true", help="exit 1 if the file differs from the rendering")

    search = sub.add_parser("local", help="random search over the same space on this machine")
    search.add_argument("dataset_uri", help="a converted dataset: manifest.json or its folder")
    search.add_argument("model_uri_root", help="each trial trains into MODEL_URI_ROOT/trial-NNN")
    search.add_argument("--trials", type=int, default=4, help="random trials to train and compare")
    search.add_argument("--seed", type=int, default=0, help="seed of the random search")
    search.add_argument(
        "--steps", type=int, default=None, help="training steps per trial (default: the trainer's default)"
    )


def run(args: argparse.Namespace) -> int:
    if args.tune_command == "write-experiment":
        text = katib.experiment_yaml(
            katib.render_experiment(katib.ExperimentOptions(image=args.image, algorithm=args.algorithm))
        )
        if args.check:
            current = args.output.read_text() if args.output.exists() else ""
            if current != text:
                print(f"{args.output} is stale: run `waveforms tune write-experiment`", file=sys.stderr)
                return 1
            print(f"{args.output} is up to date")
            return 0
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
        return 0
    from waveforms import storage
    from waveforms.manifest import load_dataset_manifest

    try:
        if args.trials < 1:
            raise ValueError(f"--trials must be at least 1, got {args.trials}")
        load_dataset_manifest(args.dataset_uri)  # a missing dataset fails before any trial
        train_config = None
        if args.steps is not None:
            from waveforms import train

            train_config = train.TrainConfig(steps=args.steps)
        objective = local.training_objective(args.dataset_uri, args.model_uri_root, train_config=train_config)
        result = local.local_search(objective, trials=args.trials, seed=args.seed,
                                    log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    except (ValueError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {"best": dataclasses.asdict(result.best), "trials": [dataclasses.asdict(trial) for trial in result.trials]},
            indent=2,
        )
    )
    return 0
