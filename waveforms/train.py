"""Training (`waveforms train DATASET_URI MODEL_URI`): a custom, compiled, distributable loop that resumes after any crash.

    manifest ──dataset.make_dataset──▶ windows (B, receptive_field + target_length - 1) and next-sample targets
      ──next_sample_nll──▶ mean NLL over every position (validation: the last target_length, full context only)
      ──all-reduce, clip by global norm, Adam with warm-up + decay──▶ weights
    every checkpoint_every steps: tf.train.Checkpoint(model, optimizer, step) + run config   (checkpoints.py)
    every eval_every steps: validation NLL in bits/sample on a fixed set; `step=.. train_bits=.. val_bits=.. best_baseline_bits=..` on stdout
    at the end: the exported model (model_store: config.json + the weights), metrics.json

The loop is custom rather than Keras `fit` for two measured reasons (TF 2.16.2, Keras 3): `fit` fails under
MultiWorkerMirroredStrategy (what Kubeflow's TFJob needs; `ValueError: Attempt to convert a value (PerReplica...)`),
and an XLA-compiled step is over twice as fast on CPU (53-55k against 19k samples/s for the `small` WaveNet).
It is model-agnostic: a task (TASKS) builds a Keras model whose logits[:, t] predict targets[:, t] (next_sample_nll).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from waveforms import baselines, checkpoints, limits, model_store, storage
from waveforms import config as configuration
from waveforms.distribution import (
    agreed_max,
    barrier,
    choose_precision,
    dtype_policy,
    gpu_compute_capabilities,
    is_chief,
    select_strategy,
    worker_name,
)
from waveforms.manifest import damaged_shard_error, iter_segments, load_dataset_manifest
from waveforms.model_store import PRIMER_FILE  # the model folder's layout is model_store's
from waveforms.tasks import make_task, next_sample_nll
from waveforms.training_output import TrainingOutput, is_trial_output, read_history, say

DECAYS = ("cosine", "exponential", "constant")
# Keras dtype policies (variables stay float32 in all of them), and "auto": choose_precision.
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int = 4  # windows per step, global (split across replicas and workers)
    target_length: int = 8192  # predicted samples per window; the window adds receptive_field - 1 of context
    # peak, reached after warm-up. Held-out bits of `small` on real music after 200 steps (docs/quality.md): 1e-3 5.25,
    # 3e-3 5.04, 1e-2 4.94, 3e-2 4.89, 1e-1 5.10; 3e-2 over a 600-s budget beats the trigram by 0.53-0.75 bits
    learning_rate: float = 3e-2
    warmup_steps: int = 100  # linear ramp from learning_rate / warmup_steps
    decay: str = "cosine"  # after warm-up: cosine | exponential | constant, down to final_learning_rate_ratio
    final_learning_rate_ratio: float = 0.05  # learning rate at the last step, relative to the peak
    clip_norm: float = 1.0  # global gradient norm clip
    checkpoint_every: int = 500  # steps; a checkpoint is also written at the end
    keep_checkpoints: int = 3
    eval_every: int = 500  # steps; an evaluation is also run at the end
    # validation windows: a fixed sample over every held-out song and the whole of each (dataset.plan_evaluation);
    # val_bits is their mean NLL, reported with its standard error
    eval_windows: int = 128
    seed: int = 0  # initial weights and the window stream
    # Also train on the window's first receptive_field - 1 positions, whose context the window start cuts short (they
    # are computed anyway, as context for the rest). Measured on the embedded dataset, `small`, 600 steps, same CPU
    # time: 3.84-3.92 held-out bits/sample against 4.12-4.25 for the full-context positions only.
    loss_on_context: bool = True
    jit_compile: bool = True  # XLA-compile the forward/backward pass (2x faster on CPU, measured)
    # > 0: also stop when this much wall time (seconds, summed over resumes) has gone into the loop, and run the
    # learning-rate schedule over whichever of `steps` and the budget ends first (warm-up = warmup_steps / steps of it),
    # so a short run still anneals; the final evaluation, checkpoint and export come after the budget
    time_budget_seconds: float = 0.0
    # WaveNet only: the standard deviation, in mu-law codes, of Gaussian noise added to the training inputs (rounded,
    # clipped; the targets stay clean), so that the model learns to continue from the slightly wrong samples it feeds
    # itself when generating (LPCNet's noise injection). On the demo's phrases, 1 code and 8,000 steps made clips that
    # hold pitches (periodicity 0.94 against 0.62 without noise), at 0.4 more held-out bits; at the demo's 2,000 steps
    # it does not help (quieter or still noise, 2 seeds), and 2 codes fall silent (docs/quality.md, "Holding a pitch").
    input_noise: float = 0.0
    # auto: float32 on CPU, mixed_bfloat16 on GPUs of compute capability >= 8.0, mixed_float16 (with dynamic loss
    # scaling) on older ones; or one of those by name. Weights and the exported model stay float32.
    precision: str = "auto"

    def validate(self) -> TrainConfig:
        positive = ("steps", "batch_size", "target_length", "checkpoint_every", "keep_checkpoints", "eval_every",
                    "eval_windows")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name, bound in (("batch_size", limits.MAX_TRAIN_BATCH), ("target_length", limits.MAX_TARGET_LENGTH),
                            ("steps", limits.MAX_STEPS)):  # fmt: skip
            limits.check_range(f"TrainConfig.{name}", getattr(self, name), 1, bound, integer=True)
        for name in ("warmup_steps", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}")
        if (
            not isinstance(self.time_budget_seconds, int | float)
            or isinstance(self.time_budget_seconds, bool)
            or not (0 <= self.time_budget_seconds < math.inf)
        ):
            raise ValueError(
                f"TrainConfig.time_budget_seconds must be a finite number >= 0, got {self.time_budget_seconds!r}"
            )
        limits.check_range("TrainConfig.input_noise", self.input_noise, 0, limits.MAX_INPUT_NOISE)
        for name in ("learning_rate", "clip_norm"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not (0 < value < math.inf):
                raise ValueError(f"TrainConfig.{name} must be a positive finite number, got {value!r}")
        if not isinstance(self.final_learning_rate_ratio, int | float) or not 0 < self.final_learning_rate_ratio <= 1:
            raise ValueError(
                f"TrainConfig.final_learning_rate_ratio must be in (0, 1], got {self.final_learning_rate_ratio!r}"
            )
        if self.decay not in DECAYS:
            raise ValueError(f"TrainConfig.decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("loss_on_context", "jit_compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be true or false, got {getattr(self, name)!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "train config") -> TrainConfig:
        return configuration.from_dict(cls, data, source)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; nothing after the last good checkpoint was saved."""


# ------------------------------------------------------------------------------------------- checks before any work


def check_dataset(manifest: dict, manifest_uri: str, window_length: int, receptive_field: int) -> None:
    """One clear error when a split has no clip long enough for one window; a note when some clips are skipped."""
    from waveforms import dataset

    for split in ("train", "validation"):
        count = dataset.count_windows(manifest, split, window_length)
        if count.windows == 0:
            raise ValueError(
                f"dataset {manifest_uri}: no {split} clip is long enough: a window needs {window_length + 1} samples "
                f"({(window_length + 1) / manifest['sample_rate']:.3f} s = receptive field {receptive_field} + "
                f"target_length, + 1 target) and all {count.records} {split} clips are shorter; lower --target-length "
                f"or choose a model with a smaller receptive field"
            )
        if count.short_records:
            print(f"note: {count.short_records} of {count.records} {split} clips are shorter than a window "
                  f"({window_length + 1} samples) and are skipped", file=sys.stderr)  # fmt: skip


def run_config_of(task, train_config: TrainConfig) -> dict:
    return {"model_kind": task.kind, "model": task.config.to_dict(), "train": train_config.to_dict()}


# ------------------------------------------------------------------------------------------------- the TF pieces


def learning_rate_schedule(config: TrainConfig, run_progress=None):
    """Linear warm-up to the peak, then cosine / exponential decay to peak · final_learning_rate_ratio at `steps`.

    With run_progress (a variable holding the fraction of the run done, by steps or by time budget, whichever is
    further), the same curve is laid over that fraction instead of the step count.
    """
    import keras
    import tensorflow as tf

    class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            if run_progress is not None:  # in steps of a run of config.steps
                step = tf.maximum(step, tf.cast(run_progress, tf.float32) * config.steps)
            warmup = float(max(config.warmup_steps, 1))
            progress = tf.clip_by_value(
                (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1), 0.0, 1.0
            )
            floor = config.final_learning_rate_ratio
            if config.decay == "cosine":
                decayed = floor + (1.0 - floor) * 0.5 * (1.0 + tf.cos(math.pi * progress))
            elif config.decay == "exponential":
                decayed = tf.pow(floor, progress)
            else:
                decayed = tf.ones_like(progress)
            ramp = tf.minimum((step + 1.0) / warmup, 1.0) if config.warmup_steps else 1.0
            return config.learning_rate * ramp * decayed

        def get_config(self):
            return config.to_dict()

    return WarmupThenDecay()


# ------------------------------------------------------------------------------------------------------- the loop


def train(dataset_uri: str, model_uri: str, model_config, train_config: TrainConfig, *, model_kind: str = "wavenet",
          progress: bool = True, trial: bool | None = None) -> dict:  # fmt: skip
    """Train (or resume training of) a model; -> the final metrics and the precision used. Raises ValueError before any work on bad input,
    checkpoints.ConfigMismatchError when MODEL_URI holds another configuration, TrainingDivergedError on NaN/Inf.
    `trial`: Katib trial output (is_trial_output; None decides from the terminal)."""
    train_config.validate()
    task = make_task(model_kind, model_config)
    if train_config.input_noise and task.kind != "wavenet":  # the autoencoder's encoder reads the same codes
        raise ValueError(f"--input-noise applies to WaveNet training, not to the {task.kind}")
    storage.check_writable(model_uri)  # a path that is a file, credentials, endpoint, TLS: before any work

    manifest_uri, manifest = load_dataset_manifest(dataset_uri)
    window_length = task.window_length(train_config.target_length)
    check_dataset(manifest, manifest_uri, window_length, task.receptive_field)
    genres = manifest.get("genres", [])
    if task.conditioned and task.config.global_condition_classes < len(genres):
        raise ValueError(f"model config: global_condition_classes={task.config.global_condition_classes} but the "
                         f"dataset has {len(genres)} genres")  # fmt: skip
    run_config = run_config_of(task, train_config)
    saved = checkpoints.read_run_config(model_uri)
    if saved is not None:
        checkpoints.check_resumable(saved, run_config, model_uri)

    import keras
    import tensorflow as tf

    strategy = select_strategy()  # first TF call: MultiWorkerMirroredStrategy must come before any other op
    chief = is_chief(strategy)
    precision = choose_precision(train_config.precision, gpu_compute_capabilities())
    if train_config.precision == "auto" and precision != "float32":
        say(chief, f"precision: {precision} (auto, for this GPU)")
    replicas = strategy.num_replicas_in_sync
    if train_config.batch_size % replicas:
        raise ValueError(f"--batch-size {train_config.batch_size} must be a multiple of the {replicas} replicas")
    remote = storage.is_remote(model_uri)
    # one writer per model: a second run on MODEL_URI fails here, naming the first (workers of one run: the chief)
    lease = storage.Lease(model_uri, "train", "train").acquire() if chief else None
    workdir = model_uri if chief and not remote else tempfile.mkdtemp(prefix="waveforms-train-")
    os.makedirs(workdir, exist_ok=True)
    out = None
    try:
        with strategy.scope():
            # the seed decides the initial weights too (same on every worker), so a run is reproducible
            keras.utils.set_random_seed(train_config.seed)
            with dtype_policy(precision):
                model = task.build_model()
            # the share of the time budget spent so far, summed over resumes (saved with the checkpoint)
            budget = RunBudget(train_config.time_budget_seconds)
            optimizer = _make_optimizer(train_config, budget.progress if budget.enabled else None,
                                        loss_scaling=precision == "mixed_float16")  # fmt: skip
            optimizer.build(model.trainable_variables)  # slots exist before restore, so restore fills them
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, spent_seconds=budget.spent)
        store = checkpoints.CheckpointStore(
            checkpoint, model_uri, workdir, run_config, train_config.keep_checkpoints, writer=chief, lease=lease
        )
        restored = store.restore_latest() if (chief or remote) else _restore_shared(store, model_uri)
        start = int(step.numpy())
        if restored:
            iterations = int(optimizer.iterations.numpy())
            say(chief, f"resumed from {restored}: step {start}, optimizer iterations {iterations}")
        out = TrainingOutput(workdir, chief, read_history(model_uri, start), progress, start, train_config.steps,
                      is_trial_output(trial))  # fmt: skip
        try:
            result = _loop(task, model, optimizer, step, strategy, store, out, manifest_uri, train_config,
                           window_length, start, budget)  # fmt: skip
        except tf.errors.DataLossError as error:  # TF's message names no file: find the shard, say it in one line
            raise damaged_shard_error(manifest, manifest_uri, error) from None
        if chief:  # the export says which precision trained it; metrics.json stays numbers only
            _warn_if_no_better_than_baselines(result, out.baselines)
            _export(task, model, workdir, {**run_config, "precision": precision}, manifest, manifest_uri, result,
                    out.baselines)  # fmt: skip
            out.write_metrics(final=result)
            if remote:
                storage.sync_dir_up(workdir, model_uri)
        barrier(strategy)  # all workers leave together: no coordination-service heartbeat errors
        name, digest = worker_name(strategy), weights_digest(model)
        say(True, f"{name} finished at step {result['step']}; weights sha256 {digest}")
        return {**result, "precision": precision}
    finally:
        if out is not None:
            out.close()
        if workdir != model_uri:
            shutil.rmtree(workdir, ignore_errors=True)
        if lease is not None:
            lease.release()


def _restore_shared(store, model_uri: str):
    """A non-chief worker restores the chief's local checkpoints (a shared volume), if there are any."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(model_uri, checkpoints.CHECKPOINT_DIR))
    if path:
        store.checkpoint.restore(path).assert_existing_objects_matched()
    return path


def _make_optimizer(config: TrainConfig, run_progress=None, loss_scaling: bool = False):
    """Adam; wrapped in Keras' dynamic LossScaleOptimizer for float16 (scale 2**15, halved on an overflowing step,
    which is skipped; doubled after 2000 good steps). make_train_step scales the loss and clips by hand."""
    import keras

    adam = keras.optimizers.Adam(learning_rate=learning_rate_schedule(config, run_progress))
    return keras.optimizers.LossScaleOptimizer(adam) if loss_scaling else adam


class RunBudget:
    """Wall time spent in the training loop against TrainConfig.time_budget_seconds, kept in the checkpoint so a
    resumed run continues the same budget. Every worker of a multi-worker run agrees on the time (the slowest's)."""

    def __init__(self, seconds: float):
        import tensorflow as tf

        self.seconds = float(seconds)
        self.enabled = self.seconds > 0
        self.spent = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="spent_seconds")
        self.progress = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="budget_progress")
        self._since = None

    def start(self) -> None:
        self._since = time.monotonic()

    def tick(self, strategy) -> bool:
        """Add the time since the last tick; update the schedule's progress; -> whether the budget is spent."""
        now = time.monotonic()
        elapsed = agreed_max(strategy, now - self._since) if self.enabled else now - self._since
        self._since = now
        self.spent.assign_add(elapsed)
        if not self.enabled:
            return False
        self.progress.assign(min(1.0, float(self.spent.numpy()) / self.seconds))
        return float(self.spent.numpy()) >= self.seconds


def make_train_step(task, model, optimizer, step, strategy, config: TrainConfig):
    """-> train_step(distributed iterator) -> (global mean loss in nats, gradient norm); one optimizer step.

    The forward/backward pass is XLA-compiled on its own: collectives (all-reduce across workers) stay outside XLA.
    With a LossScaleOptimizer (float16) the gradients are of the scaled loss: all-reduced, unscaled, clipped by their
    true global norm, then scaled back for the optimizer, which unscales them again (exactly: the scale is a power of
    two) and skips the step when they are not finite (an overflow makes the norm infinite, so clipping turns every
    gradient to NaN). A skipped step reports gradient norm 0: nothing was applied.
    """
    import keras
    import tensorflow as tf

    G = config.batch_size
    trained_positions = None if config.loss_on_context else config.target_length
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function(jit_compile=config.jit_compile)
    def loss_and_gradients(inputs, targets):
        with tf.GradientTape() as tape:
            per_example = next_sample_nll(model, inputs, targets, trained_positions, training=True,
                                          network=task.network)  # (B/replicas,)  # fmt: skip
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=G)
            differentiated = optimizer.scale_loss(loss) if loss_scaled else loss
        # embedding gradients come as IndexedSlices: dense ones (256 x channels) all-reduce and clip simply
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(differentiated, variables)]

    def replica_step(batch):
        inputs, targets = _split_batch(task, batch)
        if config.input_noise > 0:
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            inputs = {**inputs, "audio": noisy_codes(inputs["audio"], config.input_noise, task.config.quantization_channels,
                                                     tf.stack([config.seed, tf.cast(step, tf.int32), replica]))}  # fmt: skip
        loss, gradients = loss_and_gradients(inputs, targets)
        context = tf.distribute.get_replica_context()
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)  # the global batch's gradient
        if loss_scaled:
            scale = tf.convert_to_tensor(optimizer.dynamic_scale.value)
            gradients = [g / scale for g in gradients]
        gradients, norm = tf.clip_by_global_norm(gradients, config.clip_norm)
        if loss_scaled:
            gradients = [g * scale for g in gradients]  # the optimizer unscales, checks and maybe skips
            norm = tf.where(tf.math.is_finite(norm), norm, 0.0)
        # Keras all-reduces (sums) the gradients it applies once more: hand it each replica's share of the clipped one.
        optimizer.apply([g / replicas for g in gradients], variables)
        return loss, norm

    @tf.function
    def train_step(iterator):
        loss, norm = strategy.run(replica_step, args=(next(iterator),))
        step.assign_add(1)
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("MEAN", norm, axis=None)

    return train_step


def _loop(task, model, optimizer, step, strategy, store, out, manifest_uri, config: TrainConfig, window_length, start,
          budget: RunBudget):  # fmt: skip
    import tensorflow as tf

    from waveforms import dataset

    T, G = config.target_length, config.batch_size

    def input_pipeline(context):  # one per worker: its own shards (or records), its replicas' share of the batch
        # a resumed run starts a fresh stream: seeding it by the step avoids replaying the first windows
        return dataset.make_dataset(manifest_uri, split="train", window_length=window_length,
                                    batch_size=context.get_per_replica_batch_size(G), seed=config.seed + start,
                                    with_genre=task.conditioned, worker_index=context.input_pipeline_id,
                                    num_workers=context.num_input_pipelines,
                                    max_silence=task.max_silence)  # fmt: skip

    iterator = iter(strategy.distribute_datasets_from_function(input_pipeline))
    evaluation = dataset.evaluation_windows(manifest_uri, window_length, config.eval_windows)
    if out.enabled:
        out.set_baselines(baselines.for_evaluation(manifest_uri, evaluation, T))
    train_step = make_train_step(task, model, optimizer, step, strategy, config)

    @tf.function(jit_compile=config.jit_compile)
    def eval_nats(inputs, targets):
        return next_sample_nll(model, inputs, targets, T, training=False, network=task.network)  # (B,)

    def evaluate() -> tuple[float, float]:
        """Mean and standard error, in bits/sample, over the fixed evaluation windows (one mean per window)."""
        per_window = []
        for x, y, genre, valid in evaluation.batches(G, window_length):
            inputs = task.model_inputs(tf.constant(x), tf.constant(genre) if task.conditioned else None)
            per_window.append(eval_nats(inputs, tf.constant(y)).numpy()[:valid])
        return evaluation.mean_and_standard_error(np.concatenate(per_window) / math.log(2))  # over (N,) windows

    current = start
    losses, interval_start, interval_steps, eval_seconds = [], time.perf_counter(), 0, 0.0
    last_saved = start
    result = {}
    budget_spent = budget.enabled and float(budget.spent.numpy()) >= budget.seconds
    budget.start()
    while current < config.steps and not budget_spent:
        loss, norm = (float(value) for value in train_step(iterator))
        current += 1
        interval_steps += 1
        if not (math.isfinite(loss) and math.isfinite(norm)):
            last = (
                f"the last good checkpoint (step {last_saved}) is kept" if last_saved else "no checkpoint was written"
            )
            raise TrainingDivergedError(
                f"training diverged at step {current}: loss {loss}, gradient norm {norm}; stopped, {last}. "
                f"Lower --learning-rate (now {config.learning_rate}) or the clip norm (now {config.clip_norm})"
            )
        if current == start + 1:  # the first step traced and compiled: keep it out of the speed figure
            interval_start, interval_steps = time.perf_counter(), 0
        losses.append(loss)
        learning_rate = float(optimizer.learning_rate)
        out.step(current, loss, norm, learning_rate)
        budget_spent = budget.tick(strategy)
        last_step = current == config.steps or budget_spent
        if current % config.eval_every == 0 or last_step:
            elapsed = time.perf_counter() - interval_start
            began = time.perf_counter()
            val_bits, val_bits_se = evaluate()
            eval_seconds = time.perf_counter() - began
            speed = interval_steps * G * T / elapsed if interval_steps else 0.0
            result = {"step": current, "train_bits": sum(losses) / len(losses) / math.log(2), "val_bits": val_bits,
                      "val_bits_se": val_bits_se, **out.beside_baseline(val_bits), "learning_rate": learning_rate,
                      "samples_per_second": speed}  # fmt: skip
            out.evaluation(result)
            losses, interval_start, interval_steps = [], time.perf_counter(), 0
        if current % config.checkpoint_every == 0 or last_step:
            store.save(current)
            last_saved = current
    if not result:  # resumed at the last step: report without training (no train loss to report)
        val_bits, val_bits_se = evaluate()
        result = {"step": current, "val_bits": val_bits, "val_bits_se": val_bits_se, **out.beside_baseline(val_bits),
                  "learning_rate": float(optimizer.learning_rate), "samples_per_second": 0.0}  # fmt: skip
    return {**result, "receptive_field": task.receptive_field, "window_length": window_length,
            "resumed_from": start, "eval_seconds": eval_seconds, "eval_windows": len(evaluation.windows),
            "eval_songs": evaluation.songs}  # fmt: skip


def noisy_codes(codes, std: float, classes: int, seed):
    """codes (B, T) plus Gaussian noise of `std` codes, rounded and clipped to [0, classes); `seed`: 3 integers
    (stateless, so a resumed run draws the same noise at the same step)."""
    import tensorflow as tf

    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed[:2], tf.int32), seed[2])
    noise = tf.random.stateless_normal(tf.shape(codes), seed=seed, stddev=std)
    noisy = tf.clip_by_value(tf.round(tf.cast(codes, tf.float32) + noise), 0.0, float(classes - 1))
    return tf.cast(noisy, codes.dtype)


def _split_batch(task, batch):
    """Dataset elements -> (model inputs, targets): (codes, targets) or ((codes, genre), targets)."""
    features, targets = batch
    if isinstance(features, tuple | list):
        return task.model_inputs(*features), targets
    if isinstance(features, dict):
        return task.model_inputs(features["audio"], features.get("genre")), targets
    return task.model_inputs(features), targets


def _warn_if_no_better_than_baselines(result: dict, scores: dict) -> None:
    if scores and result.get("bits_below_baseline", 1.0) <= 0:
        say(True, f"warning: the model has not learned more than a count model: val_bits {result['val_bits']:.3f} "
                   f"± {result['val_bits_se']:.3f} against the {scores['best']} baseline's "
                   f"{result['best_baseline_bits']:.3f} bits/sample on the same windows")  # fmt: skip


def _export(task, model, workdir: str, run_config: dict, manifest: dict, manifest_uri: str, result: dict,
            scores: dict) -> None:  # fmt: skip
    """A fresh single-device copy of the trained model, saved with its configuration (model_store.read loads it)."""
    fresh = task.build_model()
    fresh.set_weights([variable.numpy() for variable in model.weights])
    if task.kind == "wavenet":
        write_primer(manifest, manifest_uri, os.path.join(workdir, PRIMER_FILE), task.receptive_field)
    config = {**run_config, "sample_rate": int(manifest["sample_rate"]), "genres": manifest.get("genres", []),
              "receptive_field": task.receptive_field, "step": result["step"], "val_bits": result["val_bits"],
              "val_bits_se": result["val_bits_se"], "baselines": scores,
              "data_profile": manifest.get("statistics")}  # fmt: skip
    model_store.save(workdir, task.kind, fresh, config)


PRIMER_SECONDS = 0.5  # at least; a receptive field when that is longer
PRIMER_RECORDS = 16  # training records looked at


def write_primer(manifest: dict, manifest_uri: str, path: str, receptive_field: int) -> None:
    """Save the most typical stretch of training audio (median loudness among the sounding stretches of the first
    PRIMER_RECORDS training records) as the clip `generate` continues by default: a model trained on music continues
    music, where digital silence is a state the data rarely starts from."""
    from waveforms import audio

    sample_rate = int(manifest["sample_rate"])
    length = max(receptive_field, int(PRIMER_SECONDS * sample_rate))
    candidates = []
    for index, segment in enumerate(iter_segments(manifest, manifest_uri, "train")):
        if index >= PRIMER_RECORDS:
            break
        codes = np.frombuffer(segment.audio, dtype=np.uint8)
        candidates += [codes[start : start + length] for start in range(0, codes.size - length + 1, length)]
    if not candidates:
        return  # no training record is that long: generation starts from silence
    clips = [audio.mu_law_decode(codes) for codes in candidates]
    loudness = np.array([float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)))) for clip in clips])
    sounding = (
        np.flatnonzero(loudness > 10 ** (-50 / 20)) if np.any(loudness > 10 ** (-50 / 20)) else np.arange(len(clips))
    )
    median = sounding[np.argsort(loudness[sounding])[len(sounding) // 2]]
    audio.write_wav(path, clips[median], sample_rate)


def weights_digest(model) -> str:
    """sha256 of all weights in order: workers of one distributed run must print the same digest."""
    import hashlib

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()
