"""Training: outputs (Katib lines, TensorBoard, metrics, checkpoints, export), resume after a real SIGKILL, config
mismatch, divergence, two workers training one model, and object storage as MODEL_URI.

Models are tiny (receptive field 16) and runs a few steps, so each test takes seconds; the learning itself is tested in
test_quality.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_WAVENET as TINY
from helpers import synth_dataset

from waveforms import checkpoints, cli, dataset, storage
from waveforms.model import WaveNetConfig
from waveforms.train import TrainConfig, TrainingDivergedError, train
from waveforms.training_output import is_trial_output

KATIB_LINE = re.compile(r"^step=(\d+) train_bits=(\S+) val_bits=(\S+) ")


def tiny_train_config(**changes) -> TrainConfig:
    values = dict(steps=6, batch_size=4, target_length=500, warmup_steps=2, checkpoint_every=3, eval_every=3,
                  eval_windows=4, keep_checkpoints=3)  # fmt: skip
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """The embedded synth dataset, 12 one-second notes, converted to shards + manifest.json."""
    return synth_dataset(tmp_path_factory.mktemp("synth"), count=12, seed=0, seconds=1.0)


@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY.to_dict()))
    return str(path)


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    """One in-process run: 6 steps, checkpoints and evaluations at 3 and 6; -> (model dir, result, stdout)."""
    model_dir = str(tmp_path_factory.mktemp("run") / "model")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        result = train(data_dir, model_dir, TINY, tiny_train_config(), progress=False)
    return model_dir, result, stdout.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "waveforms.cli", *args]


# ----------------------------------------------------------------------------------------------------- configuration


def test_train_config_round_trips_and_rejects_unknown_or_bad_fields():
    config = tiny_train_config(decay="exponential", seed=7)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['stepz'\]"):
        TrainConfig.from_dict({"stepz": 5})
    with pytest.raises(ValueError, match="TrainConfig.steps must be a positive integer"):
        TrainConfig(steps=0).validate()
    with pytest.raises(ValueError, match="TrainConfig.learning_rate"):
        TrainConfig(learning_rate=float("nan")).validate()
    with pytest.raises(ValueError, match="TrainConfig.decay"):
        TrainConfig(decay="linear").validate()
    with pytest.raises(ValueError, match="TrainConfig.loss_on_context must be true or false"):
        TrainConfig(loss_on_context="yes").validate()
    for bad in (-0.5, 17.0, float("nan")):
        with pytest.raises(ValueError, match="TrainConfig.input_noise"):
            TrainConfig(input_noise=bad).validate()


def test_input_noise_moves_codes_by_its_std_stays_in_range_and_is_fixed_by_seed_step_and_replica():
    import tensorflow as tf

    from waveforms.train import noisy_codes

    codes = tf.constant(np.tile(np.arange(256, dtype=np.int32), (8, 40)))  # every code, the two edges included
    draw = lambda std, seed, step, replica: noisy_codes(codes, std, 256, tf.constant([seed, step, replica]))  # noqa: E731
    noisy = draw(1.0, 0, 5, 0)
    assert noisy.dtype == codes.dtype and noisy.shape == codes.shape
    assert np.array_equal(noisy, draw(1.0, 0, 5, 0))  # a resumed run draws the same noise at the same step
    for other in (draw(1.0, 1, 5, 0), draw(1.0, 0, 6, 0), draw(1.0, 0, 5, 1)):  # seed, step, replica
        assert not np.array_equal(noisy, other)
    noisy = noisy.numpy()
    assert noisy.min() == 0 and noisy.max() == 255  # clipped to the codes, and the edges are reached
    moved = (noisy - codes.numpy())[:, 8:-8]  # away from the clipped edges: rounded N(0, 1), std about 1.04
    assert 0.95 < moved.std() < 1.15 and abs(moved.mean()) < 0.05
    unchanged = np.mean(draw(0.5, 0, 5, 0).numpy()[:, 8:-8] == codes.numpy()[:, 8:-8])
    assert 0.62 < unchanged < 0.75  # P(|N(0, 0.5)| < 0.5) = 0.68


def test_runs_saved_before_input_noise_resume_and_a_changed_noise_does_not():
    saved = {"model_kind": "wavenet", "model": TINY.to_dict(), "train": tiny_train_config().to_dict()}
    del saved["train"]["input_noise"]  # a checkpoint written before the setting existed trained without noise
    checkpoints.check_resumable(saved, {**saved, "train": tiny_train_config().to_dict()}, "model")
    with pytest.raises(checkpoints.ConfigMismatchError, match="train.input_noise: checkpoint None, requested 1.0"):
        checkpoints.check_resumable(saved, {**saved, "train": tiny_train_config(input_noise=1.0).to_dict()}, "model")


def test_the_loss_covers_every_window_position_or_only_the_last_target_length():
    from waveforms.model import build_wavenet
    from waveforms.tasks import next_sample_nll

    model = build_wavenet(TINY)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (2, 41)).astype(np.int32)
    inputs, targets = {"audio": codes[:, :-1]}, codes[:, 1:]
    logits = model(inputs).numpy()  # (2, 40, 256)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # (2, 40)
    everywhere = next_sample_nll(model, inputs, targets, None, training=False, network=TINY).numpy()
    last_ten = next_sample_nll(model, inputs, targets, 10, training=False, network=TINY).numpy()
    np.testing.assert_allclose(everywhere, nll.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(last_ten, nll[:, -10:].mean(axis=1), rtol=1e-5)


def test_clips_shorter_than_a_window_fail_before_any_work(data_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    # 1 s clips = 16,000 samples; a window of 16 + 20,000 - 1 cannot fit
    with pytest.raises(ValueError, match=r"no train clip is long enough.*receptive field 16.*--target-length"):
        train(data_dir, str(model_dir), TINY, tiny_train_config(target_length=20_000), progress=False)
    assert not model_dir.exists()
    # the same through the command line: one line, exit code 1, nothing written
    code = cli.main(["train", data_dir, str(model_dir), "--config", "small", "--target-length", "20000"])
    assert code == 1
    assert "receptive field 2047" in capsys.readouterr().err
    assert not model_dir.exists()
    assert (
        cli.main(["train", data_dir, str(model_dir), "--config", str(_write(tmp_path / "bad.json", {"stackz": 1}))])
        == 1
    )
    assert "unknown WaveNetConfig field(s) ['stackz']" in capsys.readouterr().err
    assert cli.main(["train", str(tmp_path / "nowhere"), str(model_dir)]) == 1
    assert "manifest not found" in capsys.readouterr().err


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# ----------------------------------------------------------------------------------------------------------- outputs


def test_run_writes_katib_lines_metrics_tensorboard_checkpoints_and_export(trained, data_dir):
    model_dir, result, stdout = trained
    lines = [KATIB_LINE.match(line) for line in stdout.splitlines()]
    assert [int(m.group(1)) for m in lines if m] == [3, 6], stdout
    assert result["step"] == 6 and result["receptive_field"] == 16 and result["window_length"] == 515

    metrics = json.loads(Path(model_dir, "metrics.json").read_text())
    assert [entry["step"] for entry in metrics["history"]] == [3, 6]
    assert metrics["final"]["val_bits"] == pytest.approx(result["val_bits"])

    import tensorflow as tf

    tags = set()
    for event_file in Path(model_dir, "tensorboard").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(value.tag for value in event.summary.value)
    assert {"train/loss_nats", "train/learning_rate", "validation/bits_per_sample"} <= tags

    names = sorted(os.listdir(Path(model_dir, "checkpoints")))
    assert {"ckpt-3.index", "ckpt-6.index", "checkpoint", "run_config.json"} <= set(names)
    run_config = json.loads(Path(model_dir, "checkpoints", "run_config.json").read_text())
    assert run_config == {"model_kind": "wavenet", "model": TINY.to_dict(), "train": tiny_train_config().to_dict()}

    # the export holds the final checkpoint's weights, and val_bits is nats / ln 2 over the full-context positions
    from waveforms.generate import load_model

    model, config = load_model(model_dir)
    assert config == TINY
    restored = TINY_model()
    tf.train.Checkpoint(model=restored).restore(str(Path(model_dir, "checkpoints", "ckpt-6"))).expect_partial()
    for exported, saved in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(exported, saved)
    manifest_uri = str(Path(data_dir, "manifest.json"))
    nats, count = 0.0, 0
    evaluation = dataset.evaluation_windows(manifest_uri, 515, 4)
    for x, y, _, _ in evaluation.batches(4, 515):
        logits = model({"audio": x}).numpy()[:, -500:].astype(np.float64)  # (B, T, Q)
        log_probs = (
            logits
            - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - logits.max(-1, keepdims=True)
        )
        picked = np.take_along_axis(log_probs, y[:, -500:, None], axis=-1)[..., 0]  # (B, T)
        nats += -picked.mean(axis=1).sum()
        count += len(x)
    assert result["val_bits"] == pytest.approx(nats / count / math.log(2), rel=1e-4)


def TINY_model():
    from waveforms.model import build_wavenet

    return build_wavenet(TINY)


@pytest.mark.slow
def test_the_seed_decides_the_run_same_seed_same_weights(trained, data_dir, tmp_path):
    from waveforms.generate import load_model
    from waveforms.train import weights_digest

    digests = {}
    for name, seed in (("again", 0), ("other", 1)):
        with contextlib.redirect_stdout(io.StringIO()):
            train(data_dir, str(tmp_path / name), TINY, tiny_train_config(seed=seed), progress=False)
        digests[name] = weights_digest(load_model(str(tmp_path / name))[0])
    first = weights_digest(load_model(trained[0])[0])  # seed 0, the default
    assert digests["again"] == first, "two runs with the same seed ended with different weights"
    assert digests["other"] != first


@pytest.mark.slow
def test_input_noise_changes_what_is_learned_and_a_noisy_run_repeats_with_its_seed(trained, data_dir, tmp_path):
    from waveforms.generate import load_model
    from waveforms.train import weights_digest

    digests = []
    for name in ("noisy", "again"):
        with contextlib.redirect_stdout(io.StringIO()):
            train(data_dir, str(tmp_path / name), TINY, tiny_train_config(input_noise=1.0), progress=False)
        digests.append(weights_digest(load_model(str(tmp_path / name))[0]))
    assert digests[0] == digests[1]
    assert digests[0] != weights_digest(load_model(trained[0])[0])  # the same run without noise


@pytest.mark.slow
def test_resuming_with_another_configuration_is_a_clear_error_but_more_steps_are_fine(trained, data_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained[0], model_dir)
    with pytest.raises(
        checkpoints.ConfigMismatchError,
        match=rf"train.learning_rate: checkpoint {TrainConfig().learning_rate}, requested 0.5",
    ):
        train(data_dir, model_dir, TINY, tiny_train_config(learning_rate=0.5), progress=False)
    wider = WaveNetConfig(**{**TINY.to_dict(), "residual_channels": 16})
    with pytest.raises(checkpoints.ConfigMismatchError, match=r"model.residual_channels: checkpoint 8, requested 16"):
        train(data_dir, model_dir, wider, tiny_train_config(), progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(data_dir, model_dir, TINY, tiny_train_config(steps=7, eval_every=5), progress=False)
    assert result["resumed_from"] == 6 and result["step"] == 7
    history = json.loads(Path(model_dir, "metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [3, 6, 7]


def test_trial_output_is_chosen_by_the_flag_or_by_a_log_that_is_not_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert is_trial_output(None) is False and is_trial_output(True) is True
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pod's log, or Katib's `2>&1` into a file
    assert is_trial_output(None) is True and is_trial_output(False) is False


def test_trial_progress_is_a_plain_line_without_name_value_pairs(tmp_path, monkeypatch, capsys):
    from waveforms import training_output

    monkeypatch.setattr(training_output, "TRIAL_PROGRESS_SECONDS", 0.0)
    out = training_output.TrainingOutput(str(tmp_path), True, [], True, 0, 10, trial=True)
    out.step(1, 2.5, 1.0, 1e-3)
    out.close()
    err = capsys.readouterr().err
    assert "train: step 1 of 10, training loss 3.607 bits/sample" in err and "=" not in err and "\r" not in err


# ------------------------------------------------------------------------------------------------- mixed precision


def test_auto_precision_follows_the_hardware():
    from waveforms.distribution import choose_precision

    assert choose_precision("auto", []) == "float32"  # CPU
    assert choose_precision("auto", [(8, 0), (9, 0)]) == "mixed_bfloat16"  # A100, H100
    assert choose_precision("auto", [(8, 9)]) == "mixed_bfloat16"  # L4
    assert choose_precision("auto", [(7, 5)]) == "mixed_float16"  # T4: no bf16 tensor cores
    assert choose_precision("auto", [(8, 0), (7, 0)]) == "mixed_float16"  # a mixed node: the weakest decides
    assert choose_precision("mixed_bfloat16", []) == "mixed_bfloat16"  # asked for by name: as asked
    with pytest.raises(ValueError, match="precision must be one of auto, float32, mixed_bfloat16, mixed_float16"):
        TrainConfig(precision="bfloat16").validate()


@pytest.mark.slow
def test_bfloat16_training_learns_and_its_float32_export_samples_like_the_full_model(data_dir, tmp_path):
    import keras

    from waveforms.distribution import dtype_policy
    from waveforms.fastgen import FastGenerator
    from waveforms.generate import load_model
    from waveforms.model import build_wavenet

    model_dir = str(tmp_path / "model")
    # 60 steps: with silence runs shortened in training windows (dataset.shorten_silences) the first 40 steps go to the
    # notes' sound, and the held-out 1-s notes are mostly silent tails (7.97 -> 7.75 bits by step 40)
    config = tiny_train_config(steps=60, eval_every=15, checkpoint_every=60, learning_rate=3e-3, warmup_steps=5,
                               precision="mixed_bfloat16")  # fmt: skip
    result = train(data_dir, model_dir, TINY, config, progress=False)
    assert result["precision"] == "mixed_bfloat16"
    assert json.loads(Path(model_dir, "config.json").read_text())["precision"] == "mixed_bfloat16"
    history = json.loads(Path(model_dir, "metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [15, 30, 45, 60]
    assert history[-1]["val_bits"] < history[0]["val_bits"] - 0.3, history
    assert history[-1]["train_bits"] < history[0]["train_bits"], history

    model, _ = load_model(model_dir)
    assert {weight.dtype for weight in model.weights} == {"float32"}
    assert model.get_layer("output_logits").compute_dtype == "float32"
    codes = np.random.RandomState(0).randint(0, 256, (2, 400)).astype(np.int32)
    reference = model({"audio": codes}).numpy()
    fast = FastGenerator(model, TINY, batch_size=2).step_logits(codes)
    # Both run in float32 on the same weights, so they differ only by summation order (the fused matmuls, the sigmoid
    # written as a tanh): the 1e-4 that tests/test_fastgen.py holds for float32 models over 2000 steps.
    assert np.abs(reference).max() > 1.0 and np.abs(fast - reference).max() <= 1e-4
    # The same weights computing in bfloat16 (as in training) are off by bf16 rounding (8-bit mantissa: about 0.4%
    # per operation): far outside that tolerance, which is why sampling reads the weights as float32.
    with dtype_policy("mixed_bfloat16"):
        bf16 = build_wavenet(TINY)
    bf16.set_weights(model.get_weights())
    assert bf16.get_layer("output_logits").compute_dtype == "bfloat16"
    bf16_logits = keras.ops.convert_to_numpy(keras.ops.cast(bf16({"audio": codes}), "float32"))
    assert np.abs(bf16_logits - reference).max() > 1e-3


@pytest.mark.slow
def test_float16_loss_scaling_skips_an_overflowing_step_and_lowers_the_scale(data_dir):
    import keras
    import tensorflow as tf

    from waveforms import train as train_module

    config = tiny_train_config(precision="mixed_float16", jit_compile=False)
    task = train_module.make_task("wavenet", TINY)
    with train_module.dtype_policy("mixed_float16"):
        model = task.build_model()
    assert model.get_layer("block_00_dilated_conv").compute_dtype == "float16"
    # 2**40 makes the very first backward pass overflow float16 (its largest value is 65504)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**40)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64)
    strategy = tf.distribute.get_strategy()
    train_step = train_module.make_train_step(task, model, optimizer, step, strategy, config)
    windows = dataset.make_dataset(
        str(Path(data_dir, "manifest.json")), "train", window_length=515, batch_size=4, seed=0
    )
    iterator = iter(windows)

    before = [weight.numpy().copy() for weight in model.trainable_variables]
    loss, norm = (float(value) for value in train_step(iterator))
    assert math.isfinite(loss) and norm == 0.0  # the forward pass is fine; the step was skipped
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**39 and int(optimizer.iterations.numpy()) == 0
    for old, new in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, new.numpy())

    skipped = 1
    while int(optimizer.iterations.numpy()) == 0 and skipped < 40:  # halving until the gradients fit in float16
        loss, norm = (float(value) for value in train_step(iterator))
        skipped += int(optimizer.iterations.numpy()) == 0
    assert int(optimizer.iterations.numpy()) == 1, "no step was ever applied"
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** (40 - skipped) and skipped > 1
    assert 0 < norm and math.isfinite(loss)
    assert any(np.abs(old - new.numpy()).max() > 0 for old, new in zip(before, model.trainable_variables, strict=True))


def test_a_mixture_output_trains_in_bits_per_code_and_its_export_samples_like_the_full_model(data_dir, tmp_path):
    from waveforms import output_head
    from waveforms.fastgen import FastGenerator
    from waveforms.generate import load_model

    config = dataclasses.replace(TINY, output_mixtures=3)
    model_dir = str(tmp_path / "model")
    train(data_dir, model_dir, config, tiny_train_config(steps=60, eval_every=15, checkpoint_every=60,
                                                          learning_rate=3e-3, warmup_steps=5), progress=False)  # fmt: skip
    history = json.loads(Path(model_dir, "metrics.json").read_text())["history"]
    assert history[-1]["val_bits"] < history[0]["val_bits"] - 0.3, history  # bits per 8-bit code, as for logits
    model, stored = load_model(model_dir)
    assert stored == config
    codes = np.random.RandomState(0).randint(0, 256, (2, 400)).astype(np.int32)
    reference = output_head.log_probs(model({"audio": codes}), 3, 256).numpy()
    fast = FastGenerator(model, config, batch_size=2).step_logits(codes)
    assert np.abs(np.exp(fast) - np.exp(reference)).max() <= 1e-4


@pytest.mark.slow
def test_float16_training_runs_end_to_end(data_dir, tmp_path):
    result = train(data_dir, str(tmp_path / "model"), TINY, tiny_train_config(precision="mixed_float16"),
                   progress=False)  # fmt: skip
    assert result["precision"] == "mixed_float16" and result["step"] == 6 and math.isfinite(result["val_bits"])
    import tensorflow as tf

    saved = dict(tf.train.list_variables(str(tmp_path / "model" / "checkpoints" / "ckpt-6")))
    assert "optimizer/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE" in saved  # a resumed run keeps its loss scale


@pytest.mark.slow
def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, tiny_config_file,
                                                                                capsys):  # fmt: skip
    # A real divergence: Adam moves every weight by about the learning rate on its first step, so with 1e30 the second
    # forward pass overflows. Checkpoints every step: the one of step 1 is the last good one.
    model_dir = tmp_path / "model"
    code = cli.main(["train", data_dir, str(model_dir), "--config", tiny_config_file, "--steps", "5",
                     "--batch-size", "4", "--target-length", "500", "--learning-rate", "1e30", "--warmup-steps", "0",
                     "--checkpoint-every", "1", "--no-progress"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "training diverged at step 2: loss nan" in err and "last good checkpoint (step 1) is kept" in err
    assert Path(model_dir, "checkpoints", "checkpoint").read_text().startswith('model_checkpoint_path: "ckpt-1"')
    assert not Path(model_dir, "checkpoints", "ckpt-2.index").exists()
    assert not Path(model_dir, "model.keras").exists()
    with pytest.raises(TrainingDivergedError):  # and the library raises its own error type
        train(data_dir, str(tmp_path / "again"), TINY,
              tiny_train_config(learning_rate=1e30, warmup_steps=0, checkpoint_every=1), progress=False)  # fmt: skip


# ------------------------------------------------------------------------------------------------ resume after SIGKILL


@pytest.mark.integration
def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(data_dir, tiny_config_file, tmp_path):
    model_dir = tmp_path / "model"
    command = cli_command("train", data_dir, str(model_dir), "--config", tiny_config_file, "--steps", "60",
                          "--batch-size", "4", "--target-length", "1000", "--checkpoint-every", "10",
                          "--eval-every", "30", "--no-progress")  # fmt: skip
    index = model_dir / "checkpoints" / "checkpoint"
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not index.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL, "the first run ended before it could be killed"
    assert not (model_dir / "model.keras").exists()

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = re.search(r"resumed from \S+ckpt-(\d+): step (\d+), optimizer iterations (\d+)", second.stderr)
    assert resumed, second.stderr[-3000:]
    checkpoint_step, step, iterations = (int(group) for group in resumed.groups())
    assert checkpoint_step == step == iterations and step % 10 == 0 and 10 <= step < 60
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["final"]["step"] == 60 and metrics["final"]["resumed_from"] == step
    steps = [entry["step"] for entry in metrics["history"]]
    assert steps == sorted(set(steps)) and steps[-1] == 60
    assert json.loads((model_dir / "config.json").read_text())["step"] == 60


# ------------------------------------------------------------------------------------------------------ two workers


@pytest.mark.integration
def test_two_workers_with_tf_config_train_one_model(data_dir, tiny_config_file, tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    model_dir = tmp_path / "model"
    command = cli_command("train", data_dir, str(model_dir), "--config", tiny_config_file, "--steps", "8",
                          "--batch-size", "4", "--target-length", "500", "--checkpoint-every", "4",
                          "--eval-every", "4", "--no-progress")  # fmt: skip
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=400) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "heartbeat" not in err.lower(), err[-3000:]
    digests = [re.search(r"worker worker:(\d) finished at step 8; weights sha256 (\w+)", err).groups()
               for _, err in outputs]  # fmt: skip
    assert [index for index, _ in digests] == ["0", "1"]
    assert digests[0][1] == digests[1][1], "the workers ended with different weights"
    # only the chief reports and writes: Katib lines from worker 0 alone, one TensorBoard writer, its checkpoints
    assert [int(m.group(1)) for m in map(KATIB_LINE.match, outputs[0][0].splitlines()) if m] == [4, 8]
    assert outputs[1][0] == ""
    assert len(list((model_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (model_dir / "model.keras").exists() and (model_dir / "checkpoints" / "ckpt-8.index").exists()
    from waveforms.generate import load_model
    from waveforms.train import weights_digest

    assert weights_digest(load_model(str(model_dir))[0]) == digests[0][1]


# -------------------------------------------------------------------------------------------- object storage as MODEL_URI


def test_checkpoints_and_model_go_to_object_storage_and_resume_from_there(data_dir, s3_env, s3_prefix):
    model_uri = f"{s3_prefix}/model"
    with contextlib.redirect_stdout(io.StringIO()):
        train(data_dir, model_uri, TINY, tiny_train_config(steps=4, checkpoint_every=2, eval_every=2, keep_checkpoints=1),
              progress=False)  # fmt: skip
    names = {uri.rsplit(f"{model_uri}/", 1)[1] for uri in storage.list_files(model_uri)}
    assert {"checkpoints/checkpoint", "checkpoints/run_config.json", "checkpoints/ckpt-4.index", "model.keras",
            "config.json", "metrics.json"} <= names  # fmt: skip
    assert not any(name.startswith("checkpoints/ckpt-2.") for name in names), "rotated checkpoints stay remote"
    assert any(name.startswith("tensorboard/events.out.tfevents.") for name in names)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(data_dir, model_uri, TINY, tiny_train_config(steps=5, checkpoint_every=2, eval_every=2,
                                                                    keep_checkpoints=1), progress=False)  # fmt: skip
    assert result["resumed_from"] == 4 and result["step"] == 5
    assert storage.exists(f"{model_uri}/checkpoints/ckpt-5.index")


@pytest.mark.slow
def test_a_time_budget_stops_the_run_cleanly_and_anneals_the_learning_rate(data_dir, tmp_path):
    model_dir = str(tmp_path / "budget")
    config = tiny_train_config(steps=100_000, checkpoint_every=100_000, eval_every=100_000, warmup_steps=1000,
                               learning_rate=1e-3, time_budget_seconds=6.0)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        first = train(data_dir, model_dir, TINY, config, progress=False)
    # stopped by the budget, not by the steps (6 s: the first step's tracing alone took over 3 s at load 10 on 2 cores)
    assert 1 < first["step"] < 100_000
    # the schedule ran over the budget: warm-up (1% of the run) done, the decay finished at its floor
    assert first["learning_rate"] == pytest.approx(1e-3 * config.final_learning_rate_ratio, rel=0.05)
    saved = json.loads(Path(model_dir, "config.json").read_text())
    assert saved["step"] == first["step"] and Path(model_dir, "model.keras").exists()
    assert Path(model_dir, "checkpoints", f"ckpt-{first['step']}.index").exists()
    # the budget is kept with the checkpoint: the same command again trains no further; a larger budget continues
    with contextlib.redirect_stdout(io.StringIO()):
        again = train(data_dir, model_dir, TINY, config, progress=False)
        longer = train(data_dir, model_dir, TINY, dataclasses.replace(config, time_budget_seconds=9.0), progress=False)
    assert again["step"] == first["step"]
    assert longer["step"] > first["step"]
    with pytest.raises(ValueError, match="time_budget_seconds must be a finite number >= 0"):
        TrainConfig(time_budget_seconds=float("inf")).validate()
