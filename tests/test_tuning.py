"""Tuning: the checked-in Katib Experiment, the local random search, and the create-and-wait client."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import numpy as np
import pytest
import yaml
from helpers import TINY_WAVENET, synth_dataset
from kubernetes import client as k8s

from waveforms import tuning
from waveforms.cli.tune import EXPERIMENT_FILE
from waveforms.model import WaveNetConfig

(LEARNING_RATE,) = [parameter for parameter in tuning.SEARCH_SPACE if parameter.name == "learning_rate"]

EXPERIMENT_PATH = Path(__file__).resolve().parent.parent / EXPERIMENT_FILE  # the checked-in rendering
KUBERNETES_VERSION = "1.31.0"  # Kubeflow 1.10 supports Kubernetes 1.29-1.31


def trial_container(experiment: dict) -> dict:
    (container,) = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"]
    return container


# ------------------------------------------------------------------------------------------------ the Experiment


def test_checked_in_experiment_is_what_the_library_renders():
    rendered = tuning.experiment_yaml(tuning.render_experiment())
    assert EXPERIMENT_PATH.read_text() == rendered, "stale: run `waveforms tune write-experiment`"


def test_write_experiment_check_flags_a_stale_file(tmp_path):
    path = tmp_path / "experiment.yaml"
    command = [sys.executable, "-m", "waveforms.cli", "tune", "write-experiment", "--output", str(path)]
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert subprocess.run([*command, "--check"], capture_output=True, text=True).returncode == 0
    path.write_text(path.read_text().replace("maxTrialCount: 24", "maxTrialCount: 25"))
    stale = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "stale" in stale.stderr


def test_write_experiment_writes_relative_to_the_current_folder(tmp_path):
    """The library never picks a path inside its own installation: the default is relative to where it runs."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "waveforms.cli", "tune", "write-experiment"]
    written = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / EXPERIMENT_FILE).read_text() == EXPERIMENT_PATH.read_text()
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert checked.returncode == 0 and "up to date" in checked.stdout


def test_experiment_round_trips_through_the_katib_sdk_model():
    experiment = yaml.safe_load(EXPERIMENT_PATH.read_text())
    tuning.check_experiment(experiment)  # raises on any field the SDK model would drop or retype
    misspelt = copy.deepcopy(experiment)
    misspelt["spec"]["earlyStopping"]["algorithmSetings"] = []
    with pytest.raises(ValueError, match=r"spec\.earlyStopping\.algorithmSetings is unknown"):
        tuning.check_experiment(misspelt)


@pytest.mark.parametrize("algorithm", tuning.ALGORITHMS)
def test_every_algorithm_renders_settings_its_katib_service_accepts(algorithm):
    experiment = tuning.render_experiment(tuning.ExperimentOptions(algorithm=algorithm, seed=7))
    tuning.check_experiment(experiment)
    spec = experiment["spec"]
    assert spec["algorithm"]["algorithmName"] == algorithm
    accepted = tuning.KATIB_ALGORITHMS[algorithm]
    for setting in spec["algorithm"]["algorithmSettings"]:
        assert setting["name"] in accepted, f"{algorithm} does not accept {setting['name']}"
        assert accepted[setting["name"]].problem(setting["value"]) == ""
    settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    assert settings.get("random_state") == ("7" if "random_state" in accepted else None)
    for setting in spec["earlyStopping"]["algorithmSettings"]:
        assert setting["name"] in tuning.KATIB_EARLY_STOPPING["medianstop"]
    kinds = [parameter["parameterType"] for parameter in spec["parameters"]]
    if algorithm == "grid":  # Katib's grid needs a step for every double: ours become listed values
        assert "double" not in kinds
        rate = next(p for p in spec["parameters"] if p["name"] == "learning_rate")["feasibleSpace"]["list"]
        assert (
            [float(v) for v in rate] == sorted(float(v) for v in rate)
            and float(rate[0]) == LEARNING_RATE.low
            and float(rate[-1]) == LEARNING_RATE.high
        )
    else:
        assert kinds.count("double") == 1


def test_checked_in_experiment_uses_only_settings_katib_knows():
    spec = yaml.safe_load(EXPERIMENT_PATH.read_text())["spec"]
    for table, part in ((tuning.KATIB_ALGORITHMS, "algorithm"), (tuning.KATIB_EARLY_STOPPING, "earlyStopping")):
        accepted = table[spec[part]["algorithmName"]]
        for setting in spec[part]["algorithmSettings"]:
            assert setting["name"] in accepted, f"{part} setting {setting['name']} is unknown to Katib"
            assert accepted[setting["name"]].problem(setting["value"]) == "", setting


def test_rendering_refuses_settings_katib_would_refuse():
    def render(**changes):
        return tuning.render_experiment(tuning.ExperimentOptions(**changes))

    # the bug this table exists for: optuna's n_startup_trials given to hyperopt's tpe
    with pytest.raises(ValueError, match=r"algorithm tpe: unknown setting 'n_startup_trials'"):
        render(algorithm="tpe", algorithm_settings={"n_startup_trials": "5"})
    assert render(algorithm="multivariate-tpe", algorithm_settings={"n_startup_trials": "2"})
    from_kfp = render(algorithm="multivariate-tpe", algorithm_settings={"n_startup_trials": 2.0})  # a KFP dict number
    assert {"name": "n_startup_trials", "value": "2"} in from_kfp["spec"]["algorithm"]["algorithmSettings"]
    with pytest.raises(ValueError, match=r"gamma='1' must be < 1"):
        render(algorithm="tpe", algorithm_settings={"gamma": "1"})
    assert render(algorithm="tpe", algorithm_settings={"gamma": "0.25", "n_EI_candidates": "24"})
    with pytest.raises(ValueError, match=r"base_estimator='SVM' must be one of GP, RF, ET, GBRT"):
        render(algorithm="bayesianoptimization", algorithm_settings={"base_estimator": "SVM"})
    with pytest.raises(ValueError, match=r"random_state='-1' must be >= 0"):
        render(algorithm="random", algorithm_settings={"random_state": "-1"})
    with pytest.raises(ValueError, match=r"random_state='x' must be an integer"):
        render(algorithm="cmaes", algorithm_settings={"random_state": "x"})
    with pytest.raises(ValueError, match=r"unknown setting 'random_state' \(accepted: none\)"):
        render(algorithm="sobol", algorithm_settings={"random_state": "1"})
    with pytest.raises(ValueError, match=r"unknown Katib algorithm 'hyperopt'"):
        render(algorithm="hyperopt")
    with pytest.raises(ValueError, match=r"maxTrialCount 500 exceeds the 405 grid points"):
        render(algorithm="grid", max_trial_count=500)
    one_continuous = tuple(p for p in tuning.SEARCH_SPACE if p.name != "layers_per_stack")
    with pytest.raises(ValueError, match=r"cmaes needs two or more double/int parameters"):
        tuning.render_experiment(tuning.ExperimentOptions(algorithm="cmaes"), space=one_continuous)
    experiment = tuning.render_experiment()
    experiment["spec"]["earlyStopping"]["algorithmSettings"].append({"name": "start_step", "value": "0"})
    with pytest.raises(ValueError, match=r"early stopping medianstop: setting start_step='0' must be >= 1"):
        tuning.check_experiment(experiment)


def test_write_experiment_chooses_the_algorithm(tmp_path):
    path = tmp_path / "experiment.yaml"
    command = [sys.executable, "-m", "waveforms.cli", "tune", "write-experiment", "--output", str(path)]
    assert subprocess.run([*command, "--algorithm", "multivariate-tpe"], capture_output=True).returncode == 0
    algorithm = yaml.safe_load(path.read_text())["spec"]["algorithm"]
    assert algorithm["algorithmName"] == "multivariate-tpe"
    assert {"name": "n_startup_trials", "value": "5"} in algorithm["algorithmSettings"]
    refused = subprocess.run([*command, "--algorithm", "hyperband"], capture_output=True, text=True)
    assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_trial_job_is_a_valid_batch_job_in_strict_mode():
    job = copy.deepcopy(tuning.render_experiment()["spec"]["trialTemplate"]["trialSpec"])
    job["metadata"] = {"name": "trial"}
    kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_experiment_structure():
    experiment = tuning.render_experiment()
    spec = experiment["spec"]
    assert experiment["apiVersion"] == "kubeflow.org/v1beta1" and experiment["kind"] == "Experiment"
    assert spec["objective"] == {
        "type": "minimize",
        "objectiveMetricName": "val_bits",
        "additionalMetricNames": ["train_bits"],
    }
    assert spec["algorithm"]["algorithmName"] == "tpe"
    assert spec["earlyStopping"]["algorithmName"] == "medianstop"
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    assert spec["trialTemplate"]["primaryContainerName"] == trial_container(experiment)["name"]

    by_name = {p["name"]: p for p in spec["parameters"]}
    assert by_name["learning_rate"]["feasibleSpace"]["distribution"] == "logUniform"
    assert set(by_name) == {p.name for p in tuning.SEARCH_SPACE}
    assert {"learning_rate", "residual_channels", "layers_per_stack", "batch_size", "target_length"} <= set(by_name)

    # Every search parameter reaches the command right after its flag, and every substitution is defined.
    command = trial_container(experiment)["command"]
    references = {t["name"]: t["reference"] for t in spec["trialTemplate"]["trialParameters"]}
    for parameter in tuning.SEARCH_SPACE:
        assert references[parameter.trial_parameter] == parameter.name
        flag_at = command.index(parameter.flag)
        assert command[flag_at + 1] == f"${{trialParameters.{parameter.trial_parameter}}}"
    used = set(re.findall(r"\$\{trialParameters\.(\w+)\}", " ".join(command)))
    assert used == set(references)
    assert command[:2] == ["waveforms", "train"]


def test_trial_runs_on_a_gpu_node_with_credentials_from_the_secret():
    options = tuning.ExperimentOptions(
        image="registry.example/waveforms:0.1.0-abc-gpu",
        gpus_per_trial=2,
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
    )
    experiment = tuning.render_experiment(options)
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    container = trial_container(experiment)
    assert container["image"] == options.image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    env = {item["name"]: item for item in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key]
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "waveforms-s3-credentials", "key": key}
    assert env["S3_ENDPOINT"]["value"] and env["PYTHONUNBUFFERED"]["value"] == "1"


def test_metrics_format_reads_the_training_log_line():
    """Katib's StdOut collector applies metricsFormat to each line: our train output must yield both metrics."""
    (pattern,) = tuning.render_experiment()["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    found = {m.group(1): float(m.group(2)) for m in re.finditer(pattern, "step=200 loss=2.31 val_bits=5.12e0")}
    assert found == {"step": 200.0, "loss": 2.31, "val_bits": 5.12}
    assert not re.search(pattern + r".*val_bits", "val_bits: 5.12")  # Keras's `name: value` would not be collected


def test_trial_command_is_accepted_by_the_real_train_cli():
    """Substitute a Katib assignment into the trial command and parse it with `waveforms train`'s own parser."""
    from waveforms.cli import build_parser

    experiment = tuning.render_experiment()
    assignment = {"trialName": "waveforms-tune-abc12", "learningRate": "0.00042", "residualChannels": "64",
                  "layersPerStack": "7", "batchSize": "8", "targetLength": "16000"}  # fmt: skip
    command = [
        re.sub(r"\$\{trialParameters\.(\w+)\}", lambda m: assignment[m.group(1)], token)
        for token in trial_container(experiment)["command"]
    ]
    assert command[0] == "waveforms"
    args = build_parser().parse_args(command[1:])
    assert args.command == "train" and args.model_uri.endswith("/waveforms-tune/waveforms-tune-abc12")
    assert (args.learning_rate, args.residual_channels, args.layers_per_stack) == (0.00042, 64, 7)
    assert (args.batch_size, args.target_length, args.eval_every) == (8, 16000, 200)


@pytest.mark.integration
def test_a_katib_trial_reports_each_metric_once_per_evaluation(tmp_path):
    """Run the trial command from the rendered Experiment as Katib's StdOut collector does (`sh -c "cmd
    1>metrics.log 2>&1"`) and parse the file with the Experiment's metricsFormat, line by line (a progress bar's
    carriage-return updates are one line to the collector)."""
    data = synth_dataset(tmp_path / "synth", count=8, seed=0, seconds=1.0)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_WAVENET.to_dict()))
    options = tuning.ExperimentOptions(
        dataset_uri=data, model_uri_root=str(tmp_path / "katib"), model_preset=str(config), steps=12, eval_every=4
    )
    experiment = tuning.render_experiment(options)
    assignment = {"trialName": "waveforms-tune-t1", "learningRate": "0.002", "residualChannels": "8",
                  "layersPerStack": "4", "batchSize": "4", "targetLength": "4000"}  # fmt: skip
    container = trial_container(experiment)
    command = [re.sub(r"\$\{trialParameters\.(\w+)\}", lambda m: assignment[m.group(1)], token)
               for token in container["command"]]  # fmt: skip
    assert command[0] == "waveforms"
    command = [sys.executable, "-m", "waveforms.cli", *command[1:]]  # the image's entry point, from this checkout
    env = {item["name"]: item["value"] for item in container["env"] if item["name"] == "PYTHONUNBUFFERED"}
    log = tmp_path / "metrics.log"
    wrapped = subprocess.run(["sh", "-c", f"{shlex.join(command)} 1>{shlex.quote(str(log))} 2>&1"],
                             env={**os.environ, **env}, timeout=300)  # fmt: skip
    text = log.read_text()
    assert wrapped.returncode == 0, text[-3000:]

    spec = experiment["spec"]
    (pattern,) = spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    objective = spec["objective"]["objectiveMetricName"]
    metric_names = {objective, *spec["objective"]["additionalMetricNames"]}
    history = json.loads((tmp_path / "katib" / "waveforms-tune" / "waveforms-tune-t1" / "metrics.json").read_text())
    evaluations = history["history"]
    assert [entry["step"] for entry in evaluations] == [4, 8, 12]

    collected: dict[str, list[float]] = {}  # what Katib would store, per name, in order
    evaluation_lines, summary_lines = [], []
    for line in text.split("\n"):
        pairs = [(m.group(1), m.group(2)) for m in re.finditer(pattern, line)]
        for name, value in pairs:
            collected.setdefault(name, []).append(float(value))
        if not metric_names & {name for name, _ in pairs}:
            continue
        if line.startswith("step="):
            evaluation_lines.append(dict(pairs))
        else:
            assert line.startswith("trained to step 12:"), f"a metric outside the evaluation and final lines: {line!r}"
            summary_lines.append(dict(pairs))
    assert len(evaluation_lines) == len(evaluations) and len(summary_lines) == 1
    evaluation_keys = set(evaluation_lines[0])
    assert metric_names <= evaluation_keys
    for name in evaluation_keys:  # however many keys the evaluation line carries
        assert [name in line for line in evaluation_lines] == [True] * len(evaluations), name
        repeated = 1 if name in summary_lines[0] else 0
        assert len(collected[name]) == len(evaluations) + repeated, (name, collected[name])
        assert collected[name][: len(evaluations)] == [float(line[name]) for line in evaluation_lines]
    for line, entry in zip(evaluation_lines, evaluations, strict=True):
        assert float(line[objective]) == pytest.approx(entry[objective], rel=1e-5)
    assert collected[objective][-1] == float(evaluation_lines[-1][objective])  # the last value is the final evaluation
    assert set(summary_lines[0]) <= evaluation_keys


def test_every_point_of_the_space_is_a_valid_training_configuration():
    import random

    from waveforms.model import load_config
    from waveforms.train import TrainConfig

    rng = random.Random(0)
    extremes = [{p.name: (p.values[0] if p.values else p.low) for p in tuning.SEARCH_SPACE},
                {p.name: (p.values[-1] if p.values else p.high) for p in tuning.SEARCH_SPACE}]  # fmt: skip
    for params in extremes + [{p.name: p.sample(rng) for p in tuning.SEARCH_SPACE} for _ in range(20)]:
        params = {name: int(value) if name == "layers_per_stack" else value for name, value in params.items()}
        model_config, train_config = tuning.apply_parameters(load_config("small"), TrainConfig(), params)
        model_config.validate()
        train_config.validate()
        assert train_config.learning_rate == params["learning_rate"]
        assert model_config.residual_channels == params["residual_channels"]


# ------------------------------------------------------------------------------------------------ parameters


def test_katib_assignments_become_typed_values_and_configs():
    assignments = [
        {"name": "learning_rate", "value": "0.00042"},
        {"name": "residual_channels", "value": "64"},
        {"name": "layers_per_stack", "value": "7"},
        {"name": "batch_size", "value": "8"},
        {"name": "target_length", "value": "16000"},
    ]
    params = tuning.parameters_from_assignments(assignments)
    assert params == {
        "learning_rate": 0.00042,
        "residual_channels": 64,
        "layers_per_stack": 7,
        "batch_size": 8,
        "target_length": 16000,
    }
    assert all(type(params[k]) is int for k in ("residual_channels", "layers_per_stack", "batch_size"))
    with pytest.raises(ValueError, match="missing"):
        tuning.parameters_from_assignments(assignments[:-1])
    with pytest.raises(ValueError, match="residual_channels"):
        tuning.parameters_from_assignments(
            [*assignments[:1], {"name": "residual_channels", "value": "48"}, *assignments[2:]]
        )
    model = WaveNetConfig()
    tuned_model, untouched = tuning.apply_parameters(
        model, WaveNetConfig(stacks=3), {"residual_channels": 64, "layers_per_stack": 7}
    )
    assert (tuned_model.residual_channels, tuned_model.layers_per_stack, tuned_model.stacks) == (64, 7, model.stacks)
    assert untouched == WaveNetConfig(stacks=3)


def test_parameter_definitions_reject_bad_input():
    with pytest.raises(ValueError, match="lr: log scale needs low > 0"):
        tuning.Parameter("lr", "double", "train", low=0.0, high=1.0, log_scale=True)
    with pytest.raises(ValueError, match="kind must be one of"):
        tuning.Parameter("lr", "float", "train", low=0.1, high=1.0)


# ------------------------------------------------------------------------------------------------ local search


def sine_predictor_bits(params: dict) -> float:
    """A real, cheap learning problem: SGD on a linear next-sample predictor of a noisy sine, scored in bits.

    layers_per_stack sets the number of taps, target_length the window per batch item; the value is
    0.5*log2(validation MSE), so a badly chosen learning rate (divergence or no progress) scores worse.
    """
    rng = np.random.default_rng(0)
    taps, window, batch = params["layers_per_stack"], params["target_length"] // 100, params["batch_size"]
    t = np.arange(6000)
    signal = np.sin(2 * np.pi * t / 37.0) + 0.05 * rng.standard_normal(t.size)
    frames = np.lib.stride_tricks.sliding_window_view(signal, taps + 1)  # (N, taps+1)
    train_x, train_y = frames[:4000, :-1], frames[:4000, -1]
    valid_x, valid_y = frames[4000:, :-1], frames[4000:, -1]
    weights = np.zeros(taps)
    for _ in range(60):
        starts = rng.integers(0, len(train_x) - window, size=batch)
        rows = (starts[:, None] + np.arange(window)).ravel()  # (batch * window,)
        error = train_x[rows] @ weights - train_y[rows]
        weights -= params["learning_rate"] * 200 * (train_x[rows].T @ error) / rows.size
        if not np.all(np.isfinite(weights)):
            return math.inf
    return 0.5 * math.log2(np.mean((valid_x @ weights - valid_y) ** 2) + 1e-12)


def test_local_search_is_seeded_stays_in_the_space_and_returns_the_best():
    first = tuning.local_search(sine_predictor_bits, trials=8, seed=3, log=lambda line: None)
    again = tuning.local_search(sine_predictor_bits, trials=8, seed=3, log=lambda line: None)
    other = tuning.local_search(sine_predictor_bits, trials=8, seed=4, log=lambda line: None)
    assert first == again and first.trials != other.trials
    assert len(first.trials) == 8
    scored = [trial.value for trial in first.trials if trial.value is not None]
    assert first.best.value == min(scored)
    assert first.best_parameters == first.best.parameters
    assert max(scored) - min(scored) > 0.5  # the learning rate matters on this problem: the search has work to do
    for trial in first.trials:
        lr = trial.parameters["learning_rate"]
        assert LEARNING_RATE.low <= lr <= LEARNING_RATE.high
        assert 6 <= trial.parameters["layers_per_stack"] <= 10
        assert trial.parameters["residual_channels"] in (16, 32, 64)


def test_learning_rate_is_sampled_log_uniformly():
    (learning_rate,) = [p for p in tuning.SEARCH_SPACE if p.name == "learning_rate"]
    import random

    rng = random.Random(0)
    draws = np.array([learning_rate.sample(rng) for _ in range(4000)])
    geometric_middle = math.sqrt(learning_rate.low * learning_rate.high)
    assert 0.46 < np.mean(draws < geometric_middle) < 0.54  # a uniform draw would put only ~15% below it


def test_failed_trials_are_recorded_and_all_failing_is_an_error():
    def objective(params):
        if params["batch_size"] == 16:
            raise RuntimeError("out of GPU memory")
        return params["learning_rate"]

    result = tuning.local_search(objective, trials=12, seed=1, log=lambda line: None)
    failed = [trial for trial in result.trials if trial.value is None]
    assert failed and all("out of GPU memory" in trial.error for trial in failed)
    assert result.best.parameters["batch_size"] != 16
    with pytest.raises(RuntimeError, match="all 3 trials failed"):
        tuning.local_search(lambda params: math.nan, trials=3, seed=0, log=lambda line: None)


# ------------------------------------------------------------------------------------------------ create and wait


class FakeKatib(ThreadingHTTPServer):
    """Loopback imitation of the Kubernetes CustomObjects endpoints for Katib experiments."""

    def __init__(self, outcome: str):
        super().__init__(("127.0.0.1", 0), KatibHandler)
        self.outcome = outcome  # "succeed" | "fail" | "hang"
        self.objects: dict[str, dict] = {}
        self.gets = 0
        self.requests: list[tuple[str, str, dict]] = []


class KatibHandler(BaseHTTPRequestHandler):
    server: FakeKatib
    prefix = "/apis/kubeflow.org/v1beta1/namespaces/"

    def log_message(self, *args):
        pass

    def reply(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}))
        namespace = self.path.removeprefix(self.prefix).split("/")[0]
        if self.path != f"{self.prefix}{namespace}/experiments":
            return self.reply(404, {"kind": "Status", "reason": "NotFound"})
        key = f"{namespace}/{body['metadata']['name']}"
        if key in self.server.objects:
            return self.reply(409, {"kind": "Status", "reason": "AlreadyExists", "code": 409})
        self.server.objects[key] = body
        self.reply(201, body)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
        key = self.path.removeprefix(self.prefix).replace("/experiments/", "/")
        if key not in self.server.objects:
            return self.reply(404, {"kind": "Status", "reason": "NotFound"})
        self.server.gets += 1
        self.reply(200, {**self.server.objects[key], "status": self.status()})

    def status(self) -> dict:
        step, outcome = self.server.gets, self.server.outcome
        if step == 1 or outcome == "hang":
            return {"conditions": [{"type": "Created", "status": "True"}]}
        if step == 2:
            return {"conditions": [{"type": "Running", "status": "True"}], "trialsRunning": 3}
        if outcome == "fail":
            return {"conditions": [{"type": "Failed", "status": "True", "message": "max failed trials reached"}]}
        return {
            "conditions": [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}],
            "trialsSucceeded": 24,
            "currentOptimalTrial": {
                "bestTrialName": "waveforms-tune-x7k2p",
                "parameterAssignments": [
                    {"name": "learning_rate", "value": "0.0012"},
                    {"name": "residual_channels", "value": "32"},
                    {"name": "layers_per_stack", "value": "9"},
                    {"name": "batch_size", "value": "16"},
                    {"name": "target_length", "value": "8000"},
                ],
                "observation": {
                    "metrics": [
                        {"name": "val_bits", "latest": "4.81", "min": "4.80", "max": "6.0"},
                        {"name": "loss", "latest": "3.3", "min": "3.3", "max": "5.1"},
                    ]
                },
            },
        }


@pytest.fixture
def fake_katib(request):
    server = FakeKatib(getattr(request, "param", "succeed"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    configuration.api_key = {"authorization": "Bearer test-token-not-a-secret"}
    try:
        yield server, k8s.ApiClient(configuration)
    finally:
        server.shutdown()
        server.server_close()


def test_create_and_wait_returns_the_best_trial(fake_katib):
    server, api_client = fake_katib
    experiment = tuning.render_experiment(tuning.ExperimentOptions(name="run-42", namespace="team-a"))
    lines = []
    best = tuning.create_and_wait_experiment(
        experiment, poll_seconds=0.01, timeout_seconds=10, api_client=api_client, log=lines.append
    )
    assert best.name == "waveforms-tune-x7k2p"
    assert best.parameters == {
        "learning_rate": 0.0012,
        "residual_channels": 32,
        "layers_per_stack": 9,
        "batch_size": 16,
        "target_length": 8000,
    }
    assert best.metrics == {"val_bits": 4.81, "loss": 3.3}
    assert server.objects["team-a/run-42"] == experiment  # the body arrived unchanged
    method, path, headers = server.requests[0]
    assert (method, path) == ("POST", "/apis/kubeflow.org/v1beta1/namespaces/team-a/experiments")
    assert headers["authorization"] == "Bearer test-token-not-a-secret"
    assert server.gets == 3 and any("3 running" in line for line in lines)


def test_create_refuses_an_existing_experiment(fake_katib):
    server, api_client = fake_katib
    experiment = tuning.render_experiment()
    server.objects["waveforms/waveforms-tune"] = experiment
    with pytest.raises(tuning.ExperimentError, match="already exists"):
        tuning.create_and_wait_experiment(experiment, poll_seconds=0.01, api_client=api_client, log=lambda s: None)


@pytest.mark.parametrize("fake_katib", ["fail"], indirect=True)
def test_a_failed_experiment_raises_with_katibs_message(fake_katib):
    _, api_client = fake_katib
    with pytest.raises(tuning.ExperimentError, match="max failed trials reached"):
        tuning.create_and_wait_experiment(
            tuning.render_experiment(), poll_seconds=0.01, api_client=api_client, log=lambda s: None
        )


@pytest.mark.parametrize("fake_katib", ["hang"], indirect=True)
def test_waiting_times_out(fake_katib):
    server, api_client = fake_katib
    with pytest.raises(TimeoutError, match="did not finish within 0.2 s"):
        tuning.create_and_wait_experiment(
            tuning.render_experiment(),
            poll_seconds=0.02,
            timeout_seconds=0.2,
            api_client=api_client,
            log=lambda s: None,
        )
    assert server.gets >= 3
