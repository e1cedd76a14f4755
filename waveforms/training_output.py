"""What a training run writes besides checkpoints: `name=value` evaluation lines for Katib's StdOut collector, the
progress bar (or plain progress lines in trial mode), TensorBoard summaries and metrics.json (chief only)."""

from __future__ import annotations

import json
import math
import os
import sys
import time

from waveforms import baselines, storage
from waveforms.model_store import METRICS_FILE

TENSORBOARD_DIR = "tensorboard"


TRIAL_PROGRESS_SECONDS = 60.0  # trial mode: one plain progress line per minute at most


def format_metrics(entry: dict) -> str:
    """`name=value ...`: the only form Katib's StdOut collector reads (evaluation lines and the final summary)."""
    return " ".join(
        f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}" for key, value in entry.items()
    )


def is_trial_output(trial: bool | None) -> bool:
    """Trial mode (for Katib's StdOut collector, which merges stdout and stderr into one file): when asked, and
    whenever stdout or stderr is not a terminal (a pod's log, a pipe)."""
    if trial is not None:
        return trial
    return not (sys.stdout.isatty() and sys.stderr.isatty())


class TrainingOutput:
    """Everything a run writes besides checkpoints: Katib lines, progress, TensorBoard, metrics.json (chief only).


    Progress never carries `name=value` pairs in trial mode: a tqdm postfix `loss=...` on the bar's carriage-return
    line is read by Katib as one more `loss` value per refresh (single training steps), so trial mode writes a plain
    line now and then instead of the bar, and `name=value` appears only on evaluation lines and the final summary.
    """

    def __init__(self, workdir: str, enabled: bool, history: list[dict], progress: bool, start: int, steps: int,
                 trial: bool = False):  # fmt: skip
        import tensorflow as tf
        from tqdm import tqdm

        self.enabled = enabled
        self.workdir = workdir
        self.history = history
        self.baselines: dict = {}
        self.steps = steps
        self.trial_progress = enabled and progress and trial
        self.last_progress = time.monotonic()
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, TENSORBOARD_DIR)) if enabled else None
        self.bar = tqdm(total=steps, initial=start, unit="step", file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                        disable=not (enabled and progress) or trial, desc="train")  # fmt: skip

    def step(self, step: int, loss: float, grad_norm: float, learning_rate: float) -> None:
        if not self.enabled:
            return
        import tensorflow as tf

        self.bar.update(1)
        self.bar.set_postfix_str(f"train {loss / math.log(2):.3f} bits/sample", refresh=False)  # no name=value: Katib
        if self.trial_progress and time.monotonic() - self.last_progress >= TRIAL_PROGRESS_SECONDS:
            print(
                f"train: step {step} of {self.steps}, training loss {loss / math.log(2):.3f} bits/sample",
                file=sys.stderr,
                flush=True,
            )
            self.last_progress = time.monotonic()
        with self.writer.as_default(step=step):
            tf.summary.scalar("train/loss_nats", loss)
            tf.summary.scalar("train/grad_norm", grad_norm)
            tf.summary.scalar("train/learning_rate", learning_rate)

    def set_baselines(self, scores: dict) -> None:
        """The count models' bits on the evaluation windows: printed once, beside every evaluation after."""
        self.baselines = scores
        listed = ", ".join(f"{name} {scores[name]:.3f}" for name in baselines.ORDERS)
        say(self.enabled, f"evaluation: {scores['windows']} windows over {scores['songs']} held-out songs; baselines on "
                           f"them (bits/sample): {listed}")  # fmt: skip

    def beside_baseline(self, val_bits: float) -> dict:
        if not self.baselines:
            return {}
        best = self.baselines[self.baselines["best"]]
        return {"best_baseline_bits": best, "bits_below_baseline": best - val_bits}

    def evaluation(self, entry: dict) -> None:
        if not self.enabled:
            return
        import tensorflow as tf

        self.history.append(entry)
        self.bar.write(format_metrics(entry), file=sys.stdout)  # Katib's StdOut collector reads this line
        sys.stdout.flush()
        with self.writer.as_default(step=entry["step"]):
            tf.summary.scalar("validation/bits_per_sample", entry["val_bits"])
            if "train_bits" in entry:
                tf.summary.scalar("train/bits_per_sample", entry["train_bits"])
            tf.summary.scalar("train/samples_per_second", entry["samples_per_second"])
        self.writer.flush()
        self.write_metrics()

    def write_metrics(self, final: dict | None = None) -> None:
        if not self.enabled:
            return
        data = {"history": self.history, **({"baselines": self.baselines} if self.baselines else {}),
                **({"final": final} if final else {})}  # fmt: skip
        storage.write_json(os.path.join(self.workdir, METRICS_FILE), data)

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.writer.close()


def read_history(model_uri: str, up_to_step: int) -> list[dict]:
    uri = storage.join(model_uri, METRICS_FILE)
    if up_to_step == 0 or not storage.exists(uri):
        return []
    history = json.loads(storage.read_bytes(uri)).get("history", [])
    return [entry for entry in history if entry.get("step", 0) <= up_to_step]


def say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
