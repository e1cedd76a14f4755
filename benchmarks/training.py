"""Training speed of `small`: our compiled custom step beside plain Keras `model.fit` on the same model and data.

    python -m benchmarks.training           (from the repository root; prints one JSON line per result)

Predicted samples/s = batch x target_length per step: the positions the loss is computed on, each with a full receptive
field of context. All variants see the same windows (receptive_field + target_length - 1 samples, in memory, so input
is not measured) and optimise the same loss; plain Keras masks the context positions with sample weights.
Target from the issue: >= 20,000 predicted samples/s on 2 cores (plain Keras measured 8,300 here).
"""

from __future__ import annotations

import json
import time

import numpy as np

BATCH_SIZE = 4
TARGET_LENGTH = 8192  # predicted samples per window (the train default)
STEPS = 6  # timed steps per variant, after warm-up


def _windows(config, batch_size: int, target_length: int):
    rng = np.random.default_rng(0)
    length = config.receptive_field + target_length - 1
    codes = rng.integers(0, 256, size=(batch_size, length + 1)).astype(np.int32)
    return codes[:, :-1], codes[:, 1:]  # (B, L) inputs, (B, L) next-sample targets


def _ours(config, x, y, jit: bool) -> float:
    import tensorflow as tf

    from waveforms.tasks import WaveNetTask
    from waveforms.train import TrainConfig, _make_optimizer, make_train_step

    # loss on the full-context positions only, like the Keras baseline below (the same compute either way)
    train_config = TrainConfig(batch_size=len(x), target_length=TARGET_LENGTH, loss_on_context=False, jit_compile=jit)
    strategy = tf.distribute.get_strategy()
    task = WaveNetTask(config)
    model = task.build_model()
    optimizer = _make_optimizer(train_config)
    step = tf.Variable(0, dtype=tf.int64)
    train_step = make_train_step(task, model, optimizer, step, strategy, train_config)
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    for _ in range(2):  # trace and compile
        float(train_step(iterator)[0])
    began = time.perf_counter()
    for _ in range(STEPS):
        float(train_step(iterator)[0])
    return STEPS * len(x) * TARGET_LENGTH / (time.perf_counter() - began)


def _plain_keras_fit(config, x, y) -> float:
    import keras

    from waveforms.model import build_wavenet

    model = build_wavenet(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # fmt: skip
    weights = np.zeros(y.shape, np.float32)
    weights[:, -TARGET_LENGTH:] = 1.0  # loss on the positions with full context only, as ours
    inputs = {"audio": x}
    model.fit(inputs, y, sample_weight=weights, batch_size=len(x), epochs=1, verbose=0)  # trace
    repeated = {"audio": np.tile(x, (STEPS, 1))}
    began = time.perf_counter()
    model.fit(repeated, np.tile(y, (STEPS, 1)), sample_weight=np.tile(weights, (STEPS, 1)), batch_size=len(x),
              epochs=1, verbose=0, shuffle=False)  # fmt: skip
    return STEPS * len(x) * TARGET_LENGTH / (time.perf_counter() - began)


def run() -> list[dict]:
    from waveforms.model import NAMED_CONFIGS

    config = NAMED_CONFIGS["small"]
    x, y = _windows(config, BATCH_SIZE, TARGET_LENGTH)
    baseline = _plain_keras_fit(config, x, y)
    ours = _ours(config, x, y, jit=True)
    not_compiled = _ours(config, x, y, jit=False)
    shape = f"batch {BATCH_SIZE} x {TARGET_LENGTH} predicted samples (window {x.shape[1]})"
    return [
        {"name": "training small: custom step, XLA", "value": round(ours), "unit": "predicted samples/s",
         "baseline_name": "plain Keras model.fit", "baseline_value": round(baseline), "target": ">= 20,000",
         "note": f"{ours / baseline:.2f}x plain Keras; {shape}"},
        {"name": "training small: custom step, no XLA", "value": round(not_compiled), "unit": "predicted samples/s",
         "baseline_name": "plain Keras model.fit", "baseline_value": round(baseline),
         "note": f"{not_compiled / baseline:.2f}x plain Keras; XLA gives {ours / not_compiled:.2f}x"},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
