"""`waveforms train DATASET_URI MODEL_URI`: train a WaveNet or the autoencoder (waveforms.train)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from waveforms import storage
from waveforms.config import Option, add_options, from_options
from waveforms.tasks import DEFAULT_CONFIGS, DEFAULT_TRAIN_SETTINGS, TASKS, task_class
from waveforms.train import DECAYS, PRECISIONS, TrainConfig, TrainingDivergedError, train
from waveforms.training_output import format_metrics

# flags for TrainConfig fields, in the order --help lists them; type and default from the field
OPTIONS = (
    Option("steps", "total optimizer steps"),
    Option("batch_size", "global windows per step"),
    Option("target_length", "predicted samples per window"),
    Option(
        "learning_rate",
        f"peak learning rate (default {TrainConfig.learning_rate:g}; by model kind: "
        + ", ".join(
            f"{kind} {s['learning_rate']:g}" for kind, s in DEFAULT_TRAIN_SETTINGS.items() if "learning_rate" in s
        )
        + ")",
    ),
    Option("warmup_steps", "steps of linear learning-rate warm-up"),
    Option("decay", "learning-rate decay after warm-up", choices=DECAYS),
    Option("clip_norm", "global gradient norm clip"),
    Option("checkpoint_every", "steps between checkpoints"),
    Option("eval_every", "steps between validations"),
    Option(
        "time_budget_seconds",
        "also stop after this many seconds of training (summed over resumes), with the "
        "learning rate schedule laid over the budget; 0 = steps only (default 0)",
        flag="--time-budget",
        metavar="SECONDS",
    ),  # fmt: skip
    Option(
        "input_noise",
        "WaveNet: std of Gaussian noise, in mu-law codes, added to the training inputs (targets "
        "stay clean) so generation holds up against its own sampling errors; 0 = off (docs/quality.md)",
    ),  # fmt: skip
    Option("eval_windows", "validation windows"),
    Option("seed", "initial weights and window order"),
    Option(
        "loss_on_context",
        "train on the full-context positions of each window only",
        flag="--no-loss-on-context",
        negate=True,
    ),  # fmt: skip
    Option("jit_compile", "do not XLA-compile the training step", flag="--no-jit", negate=True),
    Option(
        "precision",
        "auto: float32 on CPU, bf16 on GPUs of compute capability >= 8.0, else fp16 with loss scaling",
        choices=PRECISIONS,
    ),  # fmt: skip
)
MODEL_OVERRIDES = ("residual_channels", "layers_per_stack")  # model-configuration fields with their own flag


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset_uri", metavar="DATASET_URI", help="a manifest.json (or its folder), local or s3://, minio://"
    )
    parser.add_argument(
        "model_uri", metavar="MODEL_URI", help="folder for checkpoints, TensorBoard, metrics and the model"
    )
    parser.add_argument("--model", default="wavenet", choices=sorted(TASKS), help="model kind")
    parser.add_argument(
        "--config",
        default=None,
        help="named configuration (wavenet: small, ibab; autoencoder: default) or a JSON/YAML file",
    )
    for name in MODEL_OVERRIDES:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"override the model configuration's {name}")
    parser.add_argument(
        "--genre-conditioning",
        action="store_true",
        help="condition on the genre (global_condition_classes = the dataset's genre count)",
    )
    add_options(parser, TrainConfig, OPTIONS)
    # fields whose default depends on --model: None here, filled in by run() once the kind is known
    parser.set_defaults(**{name: None for name in _kind_dependent_fields()})
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--trial", action="store_true", default=None,
                        help="Katib trial output: no progress bar, name=value only on evaluation lines and the final "
                             "line (the default whenever stdout or stderr is not a terminal)")  # fmt: skip


def _kind_dependent_fields() -> set[str]:
    return {name for settings in DEFAULT_TRAIN_SETTINGS.values() for name in settings}


def _fill_kind_defaults(args: argparse.Namespace) -> None:
    """Flags left unset get the model kind's default (DEFAULT_TRAIN_SETTINGS), else TrainConfig's."""
    settings = DEFAULT_TRAIN_SETTINGS.get(args.model, {})
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    for name in _kind_dependent_fields():
        if getattr(args, name) is None:
            setattr(args, name, settings.get(name, defaults[name]))


def run(args: argparse.Namespace) -> int:
    _fill_kind_defaults(args)
    try:
        task_type = task_class(args.model)
        overrides = {name: getattr(args, name) for name in MODEL_OVERRIDES if getattr(args, name) is not None}
        if args.genre_conditioning:
            from waveforms.manifest import load_dataset_manifest

            genres = load_dataset_manifest(args.dataset_uri)[1]["genres"]
            overrides["global_condition_classes"] = max(1, len(genres))
        model_config = task_type.load_config(args.config or DEFAULT_CONFIGS[args.model], **overrides)
        train_config = from_options(TrainConfig, args, OPTIONS)
        result = train(args.dataset_uri, args.model_uri, model_config, train_config, model_kind=args.model,
                       progress=not args.no_progress, trial=args.trial)  # fmt: skip
    except (ValueError, TrainingDivergedError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # the objective again, formatted as on the evaluation line: Katib's last value is the final evaluation's
    final = format_metrics({"val_bits": result["val_bits"]})
    beside = (f" (± {result['val_bits_se']:.4f}; best baseline {result['best_baseline_bits']:.4f}, "
              f"{result['bits_below_baseline']:+.4f} below it)" if "best_baseline_bits" in result else "")  # fmt: skip
    print(f"trained to step {result['step']}: {final}{beside}; model in {args.model_uri}", file=sys.stderr)
    return 0
