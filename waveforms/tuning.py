"""Hyperparameter tuning: one search space, three ways to search it.

- `render_experiment` turns the space into a Katib v1beta1 Experiment (TPE by default, median stopping, one GPU Job per trial running
  `waveforms train`); `manifests/katib/experiment.yaml` is its default rendering (`waveforms tune write-experiment`).
- `create_and_wait_experiment` submits such an Experiment from inside a pipeline and returns the best trial.
- `local_search` samples the same space at random on this machine (`tuning=local`: the demo and the tests).

Katib reads metrics from the trial's stdout and stderr: `waveforms train --trial` prints `name=value` pairs only on its
evaluation lines (`step=200 train_bits=5.31 val_bits=5.12 ...`) and its final line (the last evaluation's val_bits again).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from waveforms.cluster import CREDENTIAL_KEYS, CREDENTIALS_SECRET, GENERIC_GPU_SELECTOR, GPU_RESOURCE, GPU_TOLERATION

OBJECTIVE_METRIC = "val_bits"  # validation negative log-likelihood, bits per sample: lower is better
ADDITIONAL_METRICS = ("train_bits",)
# Katib's default StdOut filter, written out so the contract with `waveforms train` output is visible and tested.
METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
EXPERIMENT_PATH = Path(__file__).resolve().parent.parent / "manifests" / "katib" / "experiment.yaml"
KATIB_GROUP, KATIB_VERSION, KATIB_PLURAL = "kubeflow.org", "v1beta1", "experiments"
PRIMARY_CONTAINER = "training"
IMAGE_PLACEHOLDER = "waveforms-gpu"  # replaced by the kustomize `images:` entry at deploy time (docs/cluster.md)

KINDS = ("double", "int", "discrete", "categorical")  # Katib parameterType values


@dataclass(frozen=True)
class Parameter:
    """One tunable setting. `name` is also the config field it sets and, dashed, the `waveforms train` flag."""

    name: str
    kind: str  # one of KINDS
    config: str  # "train" (TrainConfig) or "model" (WaveNetConfig)
    low: float | None = None  # double/int bounds, inclusive
    high: float | None = None
    values: tuple[Any, ...] = ()  # discrete/categorical choices
    log_scale: bool = False  # sample log-uniformly (double only)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.config not in ("train", "model"):
            raise ValueError(f"parameter {self.name}: config must be 'train' or 'model', got {self.config!r}")
        if self.kind in ("double", "int"):
            if self.low is None or self.high is None or not self.low < self.high:
                raise ValueError(f"parameter {self.name}: needs low < high, got {self.low}, {self.high}")
            if self.log_scale and self.low <= 0:
                raise ValueError(f"parameter {self.name}: log scale needs low > 0, got {self.low}")
        elif not self.values:
            raise ValueError(f"parameter {self.name}: a {self.kind} parameter needs values")
        if self.log_scale and self.kind != "double":
            raise ValueError(f"parameter {self.name}: log scale applies to double parameters only")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def trial_parameter(self) -> str:
        """camelCase name used in `${trialParameters.x}` substitutions."""
        head, *rest = self.name.split("_")
        return head + "".join(word.capitalize() for word in rest)

    def sample(self, rng: random.Random) -> Any:
        if self.kind == "double":
            if self.log_scale:
                return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return rng.uniform(self.low, self.high)
        if self.kind == "int":
            return rng.randint(int(self.low), int(self.high))
        return rng.choice(self.values)

    def parse(self, text: str) -> Any:
        """A Katib assignment (always a string) as the typed value this parameter takes."""
        try:
            if self.kind == "double":
                return float(text)
            if self.kind == "int":
                return int(float(text))
            for value in self.values:
                if str(value) == text or (self.kind == "discrete" and float(value) == float(text)):
                    return value
        except ValueError:
            pass
        raise ValueError(f"parameter {self.name}: {text!r} is not a valid {self.kind} value")

    def grid_values(self, points: int) -> tuple[float, ...]:
        """`points` values spanning a double's range (geometric on a log scale), 3 significant digits."""
        if self.log_scale:
            ratio = (self.high / self.low) ** (1 / (points - 1))
            values = [self.low * ratio**index for index in range(points)]
        else:
            values = [self.low + (self.high - self.low) * index / (points - 1) for index in range(points)]
        return tuple(min(max(float(f"{value:.3g}"), self.low), self.high) for value in values)

    def katib_spec(self, grid: bool = False) -> dict:
        """Katib's parameter spec; `grid`: a double becomes a discrete list (Katib's grid needs finite values)."""
        if grid and self.kind == "double":
            values = [repr(value) for value in self.grid_values(GRID_POINTS)]
            return {"name": self.name, "parameterType": "discrete", "feasibleSpace": {"list": values}}
        if self.kind in ("double", "int"):
            space = {"min": _katib_number(self.low, self.kind), "max": _katib_number(self.high, self.kind)}
            if self.kind == "double":
                space["distribution"] = "logUniform" if self.log_scale else "uniform"
        else:
            space = {"list": [str(value) for value in self.values]}
        return {"name": self.name, "parameterType": self.kind, "feasibleSpace": space}


def _katib_number(value: float, kind: str) -> str:
    return str(int(value)) if kind == "int" else repr(float(value))


# The one search space. Lengths are in samples at 16 kHz; channels and batch sizes stay powers of two for the GPU.
SEARCH_SPACE: tuple[Parameter, ...] = (
    Parameter("learning_rate", "double", "train", low=1e-4, high=3e-3, log_scale=True),
    Parameter("residual_channels", "discrete", "model", values=(16, 32, 64)),
    Parameter("layers_per_stack", "int", "model", low=6, high=10),
    Parameter("batch_size", "discrete", "train", values=(4, 8, 16)),
    Parameter("target_length", "discrete", "train", values=(4000, 8000, 16000)),
)


def parameters_from_assignments(assignments: Sequence[Mapping[str, str]], space=SEARCH_SPACE) -> dict[str, Any]:
    """Katib `parameterAssignments` ([{name, value}]) as typed values; every parameter of the space must be there."""
    by_name = {parameter.name: parameter for parameter in space}
    given = {item["name"]: item["value"] for item in assignments}
    unknown, missing = set(given) - set(by_name), set(by_name) - set(given)
    if unknown or missing:
        raise ValueError(
            f"parameter assignments do not match the search space: unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    return {name: by_name[name].parse(str(value)) for name, value in given.items()}


def apply_parameters(model_config, train_config, params: Mapping[str, Any], space=SEARCH_SPACE):
    """(model_config, train_config) with the tuned values replaced (both are frozen dataclasses)."""
    by_name = {parameter.name: parameter for parameter in space}
    model_changes = {name: value for name, value in params.items() if by_name[name].config == "model"}
    train_changes = {name: value for name, value in params.items() if by_name[name].config == "train"}
    return dataclasses.replace(model_config, **model_changes), dataclasses.replace(train_config, **train_changes)


# ------------------------------------------------------------------------------------------ Katib algorithm settings
# Katib passes `algorithmSettings` to the suggestion service of the algorithm (katib-config.yaml maps each name to an
# image); the service validates them by name only after `kubectl apply` has succeeded, and an unknown setting marks
# the Suggestion Failed: the Experiment then fails before any trial. So every setting we render must be in this table.
# Read from kubeflow/katib v0.18.0 (the files are unchanged up to v0.19); the file each entry follows is named beside it.


@dataclass(frozen=True)
class SettingRange:
    """The values a Katib suggestion or early-stopping service accepts for one setting (values are strings there)."""

    kind: str  # "int" | "float" | "choice"
    low: float | None = None  # bound, inclusive unless low_open
    high: float | None = None  # bound, inclusive unless high_open
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, value: str) -> str:
        """Why `value` would be refused; "" when it is accepted."""
        if self.kind == "choice":
            return "" if value in self.choices else f"must be one of {', '.join(self.choices)}"
        try:
            number = int(value) if self.kind == "int" else float(value)
        except ValueError:
            return f"must be {'an integer' if self.kind == 'int' else 'a number'}"
        if self.kind == "float" and not math.isfinite(number):
            return "must be finite"
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None and (number >= self.high if self.high_open else number > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return ""


_SEED = SettingRange("int", low=0)  # every service that takes random_state wants an int >= 0

# algorithmName -> setting -> accepted values. The service file is the one katib-config.yaml's image runs.
KATIB_ALGORITHMS: dict[str, dict[str, SettingRange]] = {
    # pkg/suggestion/v1beta1/hyperopt/service.py (_validate_random_setting)
    "random": {"random_state": _SEED},
    # pkg/suggestion/v1beta1/hyperopt/service.py (_validate_tpe_setting). Hyperopt's TPE starts modelling after
    # parallelTrialCount random trials (hyperopt/base_service.py passes n_startup_jobs=current_request_number).
    "tpe": {
        "gamma": SettingRange("float", low=0, high=1, low_open=True, high_open=True),
        "prior_weight": SettingRange("float", low=0, low_open=True),
        "n_EI_candidates": SettingRange("int", low=1),
        "random_state": _SEED,
    },
    # pkg/suggestion/v1beta1/optuna/service.py (_validate_tpe_setting; random_state becomes optuna's seed)
    "multivariate-tpe": {
        "n_startup_trials": SettingRange("int", low=0),
        "n_ei_candidates": SettingRange("int", low=0),
        "random_state": _SEED,
    },
    # pkg/suggestion/v1beta1/optuna/service.py (_validate_grid_setting: also every double needs a step and
    # maxTrialCount <= the number of grid points, see _grid_problems)
    "grid": {"random_state": _SEED},
    # pkg/suggestion/v1beta1/skopt/service.py (_validate_bayesianoptimization_setting)
    "bayesianoptimization": {
        "base_estimator": SettingRange("choice", choices=("GP", "RF", "ET", "GBRT")),
        "n_initial_points": SettingRange("int", low=0),
        "acq_func": SettingRange("choice", choices=("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps")),
        "acq_optimizer": SettingRange("choice", choices=("auto", "sampling", "lbfgs")),
        "random_state": _SEED,
    },
    # pkg/suggestion/v1beta1/goptuna/converter.go (toGoptunaSampler) and service.go (ValidateAlgorithmSettings:
    # two or more double/int parameters). Goptuna samples doubles uniformly: it ignores `distribution: logUniform`.
    "cmaes": {
        "random_state": _SEED,
        "sigma": SettingRange("float", low=0, low_open=True),
        "restart_strategy": SettingRange("choice", choices=("ipop", "bipop", "none")),
    },
    # pkg/suggestion/v1beta1/goptuna/converter.go: sobol.NewSampler() takes no option (any setting would be ignored)
    "sobol": {},
}
# pkg/earlystopping/v1beta1/medianstop/service.py (validate_medianstop_setting)
KATIB_EARLY_STOPPING: dict[str, dict[str, SettingRange]] = {
    "medianstop": {"min_trials_required": SettingRange("int", low=1), "start_step": SettingRange("int", low=1)},
}
ALGORITHMS = tuple(KATIB_ALGORITHMS)
# Hyperopt TPE: 24 trials, 3 at a time, and it models from the 4th trial on; it honours logUniform.
DEFAULT_ALGORITHM = "tpe"
GRID_POINTS = 3  # values per double parameter when the grid algorithm lists them (geometric for log-scale ones)


def default_algorithm_settings(algorithm: str, options: ExperimentOptions) -> dict[str, str]:
    """What we set for each algorithm: the seed everywhere it is accepted, and a short random start for the
    model-based ones (a few trials of a small budget, not their defaults of 10-20)."""
    if algorithm not in KATIB_ALGORITHMS:
        raise ValueError(f"unknown Katib algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}")
    settings = {"random_state": str(options.seed)} if "random_state" in KATIB_ALGORITHMS[algorithm] else {}
    startup = str(min(5, options.max_trial_count))
    if algorithm == "multivariate-tpe":
        settings["n_startup_trials"] = startup
    if algorithm == "bayesianoptimization":
        settings["n_initial_points"] = startup
    return settings


def settings_problems(kind: str, name: str, settings: Sequence[Mapping[str, str]]) -> list[str]:
    """Each way `settings` ([{name, value}]) would be refused by the Katib service of algorithm `name`."""
    table = KATIB_ALGORITHMS if kind == "algorithm" else KATIB_EARLY_STOPPING
    if name not in table:
        return [f"{kind} {name!r} is not one of {', '.join(table)}"]
    problems = []
    for setting in settings:
        accepted = table[name].get(setting.get("name"))
        if accepted is None:
            known = ", ".join(table[name]) or "none"
            problems.append(f"{kind} {name}: unknown setting {setting.get('name')!r} (accepted: {known})")
            continue
        why = accepted.problem(str(setting.get("value")))
        if why:
            problems.append(f"{kind} {name}: setting {setting['name']}={setting.get('value')!r} {why}")
    return problems


def _setting_text(value) -> str:
    """Katib setting values are strings; a whole float (KFP dict parameters carry every number as one) is an int."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def check_algorithm_settings(experiment: dict) -> None:
    """Raise ValueError when Katib's suggestion or early-stopping service would refuse the Experiment's settings."""
    spec = experiment.get("spec", {})
    algorithm = spec.get("algorithm", {})
    name = algorithm.get("algorithmName")
    problems = settings_problems("algorithm", name, algorithm.get("algorithmSettings", []))
    if "earlyStopping" in spec:
        early = spec["earlyStopping"]
        problems += settings_problems("early stopping", early.get("algorithmName"), early.get("algorithmSettings", []))
    parameters = spec.get("parameters", [])
    if name == "cmaes" and sum(p.get("parameterType") in ("double", "int") for p in parameters) < 2:
        problems.append("algorithm cmaes needs two or more double/int parameters")
    if name == "grid":
        problems += _grid_problems(parameters, spec.get("maxTrialCount", 0))
    if problems:
        raise ValueError(f"experiment {experiment.get('metadata', {}).get('name', '?')}: " + "; ".join(problems))


def _grid_problems(parameters: Sequence[Mapping], max_trial_count: int) -> list[str]:
    points, problems = 1, []
    for parameter in parameters:
        space = parameter.get("feasibleSpace", {})
        if parameter.get("parameterType") == "double" and not space.get("step"):
            problems.append(f"algorithm grid: double parameter {parameter.get('name')} needs a step")
        elif parameter.get("parameterType") == "double":
            points *= math.floor(round((float(space["max"]) - float(space["min"])) / float(space["step"]), 9)) + 1
        elif parameter.get("parameterType") == "int":
            points *= (int(space["max"]) - int(space["min"])) // int(space.get("step") or 1) + 1
        else:
            points *= len(space.get("list", []))
    if not problems and max_trial_count > points:
        problems.append(f"algorithm grid: maxTrialCount {max_trial_count} exceeds the {points} grid points")
    return problems


# ---------------------------------------------------------------------------------------------------------- Katib


@dataclass(frozen=True)
class ExperimentOptions:
    name: str = "waveforms-tune"
    namespace: str = "waveforms"
    algorithm: str = DEFAULT_ALGORITHM  # one of ALGORITHMS (KATIB_ALGORITHMS)
    algorithm_settings: Mapping[str, str] = field(default_factory=dict)  # added to / replacing the defaults
    image: str = IMAGE_PLACEHOLDER  # the project's GPU image, immutable tag
    dataset_uri: str = "s3://waveforms/datasets/default"
    model_uri_root: str = "s3://waveforms/katib"  # each trial writes under <root>/<experiment>/<trial name>
    model_preset: str = "small"  # `waveforms train --config`
    steps: int = 2000  # training steps per trial
    eval_every: int = 200  # one `val_bits=` line per evaluation: median stopping compares these
    max_trial_count: int = 24
    parallel_trial_count: int = 3
    max_failed_trial_count: int = 3
    gpus_per_trial: int = 1
    cpu_request: str = "4"
    memory: str = "16Gi"
    node_selector: Mapping[str, str] = field(default_factory=lambda: dict(GENERIC_GPU_SELECTOR))
    s3_endpoint: str = "minio-service.kubeflow:9000"  # Kubeflow's in-cluster MinIO
    s3_use_https: bool = False
    aws_region: str = "us-east-1"
    credentials_secret: str = CREDENTIALS_SECRET
    seed: int = 0


def render_experiment(options: ExperimentOptions = ExperimentOptions(), space=SEARCH_SPACE) -> dict:
    """The Katib Experiment for `space` as a plain dict (kubeflow.org/v1beta1). Raises ValueError for an algorithm
    setting Katib's services would refuse (KATIB_ALGORITHMS)."""
    settings = {**default_algorithm_settings(options.algorithm, options),
                **{name: _setting_text(value) for name, value in options.algorithm_settings.items()}}  # fmt: skip
    trial_name = "trialName"
    command = [
        "waveforms", "train", options.dataset_uri,
        f"{options.model_uri_root}/{options.name}/${{trialParameters.{trial_name}}}",
        "--config", options.model_preset, "--steps", str(options.steps), "--eval-every", str(options.eval_every),
        "--seed", str(options.seed), "--trial",
    ]  # fmt: skip
    for parameter in space:
        command += [parameter.flag, f"${{trialParameters.{parameter.trial_parameter}}}"]
    secret_env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": options.credentials_secret, "key": key}}}
        for key in CREDENTIAL_KEYS
    ]
    container = {
        "name": PRIMARY_CONTAINER,
        "image": options.image,
        "command": command,
        "env": [
            {"name": "PYTHONUNBUFFERED", "value": "1"},  # metric lines must reach the collector as they are printed
            {"name": "S3_ENDPOINT", "value": options.s3_endpoint},
            {"name": "S3_USE_HTTPS", "value": "1" if options.s3_use_https else "0"},
            {"name": "AWS_REGION", "value": options.aws_region},
            *secret_env,
        ],
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory},
            "limits": {"memory": options.memory, GPU_RESOURCE: str(options.gpus_per_trial)},
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,  # a failed trial is reported to Katib, not retried behind its back
            "template": {
                # Istio sidecars keep the pod running after training ends, so the Job would never complete.
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": dict(options.node_selector),
                    "tolerations": [dict(GPU_TOLERATION)],
                    "containers": [container],
                },
            },
        },
    }
    trial_parameters = [
        {
            "name": trial_name,
            "description": "Trial name: each trial writes its own model",
            "reference": "${trialSpec.Name}",
        }
    ] + [
        {"name": p.trial_parameter, "description": f"{p.config} config field {p.name}", "reference": p.name}
        for p in space
    ]
    experiment = {
        "apiVersion": f"{KATIB_GROUP}/{KATIB_VERSION}",
        "kind": "Experiment",
        "metadata": {"name": options.name, "namespace": options.namespace},
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": OBJECTIVE_METRIC,
                "additionalMetricNames": list(ADDITIONAL_METRICS),
            },
            "algorithm": {
                "algorithmName": options.algorithm,
                "algorithmSettings": [{"name": name, "value": value} for name, value in settings.items()],
            },
            "earlyStopping": {
                "algorithmName": "medianstop",
                "algorithmSettings": [
                    {"name": "min_trials_required", "value": "3"},
                    {"name": "start_step", "value": "3"},  # evaluations before a trial can be stopped
                ],
            },
            "parallelTrialCount": options.parallel_trial_count,
            "maxTrialCount": options.max_trial_count,
            "maxFailedTrialCount": options.max_failed_trial_count,
            "metricsCollectorSpec": {
                "collector": {"kind": "StdOut"},
                "source": {"filter": {"metricsFormat": [METRICS_FORMAT]}},
            },
            "parameters": [parameter.katib_spec(grid=options.algorithm == "grid") for parameter in space],
            "trialTemplate": {
                "primaryContainerName": PRIMARY_CONTAINER,
                "trialParameters": trial_parameters,
                "trialSpec": job,
            },
        },
    }
    check_algorithm_settings(experiment)
    return experiment


def check_experiment(experiment: dict) -> None:
    """Load into Katib's SDK model and back; a field the model drops or changes is a typo Katib would ignore.

    The Experiment CRD has no schema (Katib's webhook validates on a cluster), so this is the offline check; the
    algorithm settings are checked against KATIB_ALGORITHMS (the suggestion services validate them only later).
    """
    from types import SimpleNamespace

    from kubeflow.katib import ApiClient

    client = ApiClient()
    name = experiment.get("metadata", {}).get("name", "?")
    try:
        model = client.deserialize(SimpleNamespace(data=json.dumps(experiment)), "V1beta1Experiment")
    except (AttributeError, TypeError, ValueError) as error:  # the generated deserializer fails on wrong types
        raise ValueError(f"experiment {name} does not load into Katib's V1beta1Experiment: {error!r}") from error
    round_trip = client.sanitize_for_serialization(model)
    difference = _first_difference(experiment, round_trip, "")
    if difference:
        raise ValueError(f"experiment {name} does not match Katib's v1beta1 Experiment model: {difference}")
    check_algorithm_settings(experiment)


def _first_difference(expected: Any, actual: Any, path: str) -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                return f"field {path}.{key} is unknown"
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return ""
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = _first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return ""
    return "" if expected == actual and type(expected) is type(actual) else f"field {path} changed: {expected!r}"


def experiment_yaml(experiment: dict) -> str:
    header = "# Generated by `waveforms tune write-experiment` from waveforms/tuning.py. Do not edit by hand.\n"
    return header + yaml.safe_dump(experiment, sort_keys=False, width=120)


@dataclass(frozen=True)
class BestTrial:
    name: str
    parameters: dict[str, Any]  # typed values, keyed by parameter name
    metrics: dict[str, float]  # latest value of each metric of the best trial


class ExperimentError(RuntimeError):
    pass


def current_namespace(default: str = "waveforms") -> str:
    """The pod's own namespace inside Kubernetes (where a pipeline step runs), else `default`."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else default


def _custom_objects_api(api_client):
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api_client = client.ApiClient()
    return client.CustomObjectsApi(api_client)


def create_and_wait_experiment(
    experiment: dict,
    *,
    timeout_seconds: float = 6 * 3600,
    poll_seconds: float = 30,
    api_client=None,
    space=SEARCH_SPACE,
    log: Callable[[str], None] = print,
) -> BestTrial:
    """Create the Experiment, poll until it succeeds, return its best trial. Raises ExperimentError, TimeoutError."""
    from kubernetes.client.exceptions import ApiException

    api = _custom_objects_api(api_client)
    name, namespace = experiment["metadata"]["name"], experiment["metadata"]["namespace"]
    where = f"experiment {namespace}/{name}"
    try:
        api.create_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace, KATIB_PLURAL, experiment)
    except ApiException as error:
        reasons = {
            409: "it already exists: choose a new name",
            403: "forbidden: the service account may not create Katib experiments here",
            404: "the Experiment CRD is not installed (is Katib deployed?)",
        }
        raise ExperimentError(f"cannot create {where}: {reasons.get(error.status, error.reason)}") from error
    log(f"created {where}")
    deadline = time.monotonic() + timeout_seconds
    last_summary = None
    while True:
        status = api.get_namespaced_custom_object(KATIB_GROUP, KATIB_VERSION, namespace, KATIB_PLURAL, name).get(
            "status", {}
        )
        conditions = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
        summary = (
            f"{where}: {status.get('trialsSucceeded', 0)} succeeded, {status.get('trialsRunning', 0)} running, "
            f"{status.get('trialsFailed', 0)} failed, {status.get('trialsEarlyStopped', 0)} early-stopped"
        )
        if summary != last_summary:
            log(summary)
            last_summary = summary
        if "Failed" in conditions:
            raise ExperimentError(f"{where} failed: {conditions['Failed'].get('message', 'no message')}")
        if "Succeeded" in conditions:
            return _best_trial(status, where, space)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{where} did not finish within {timeout_seconds:g} s (it keeps running; "
                f"`kubectl -n {namespace} delete experiment {name}` stops it)"
            )
        time.sleep(poll_seconds)


def _best_trial(status: dict, where: str, space) -> BestTrial:
    optimal = status.get("currentOptimalTrial") or {}
    if not optimal.get("bestTrialName") or not optimal.get("parameterAssignments"):
        raise ExperimentError(
            f"{where} succeeded without a best trial (did every trial fail to report {OBJECTIVE_METRIC}?)"
        )
    metrics = {m["name"]: float(m["latest"]) for m in optimal.get("observation", {}).get("metrics", [])}
    return BestTrial(
        optimal["bestTrialName"], parameters_from_assignments(optimal["parameterAssignments"], space), metrics
    )


# ---------------------------------------------------------------------------------------------------------- local


@dataclass(frozen=True)
class Trial:
    index: int
    parameters: dict[str, Any]
    value: float | None  # the objective; None when the trial failed
    error: str = ""


@dataclass(frozen=True)
class SearchResult:
    best: Trial
    trials: tuple[Trial, ...]

    @property
    def best_parameters(self) -> dict[str, Any]:
        return dict(self.best.parameters)


def local_search(
    objective: Callable[[dict[str, Any]], float],
    trials: int = 4,
    seed: int = 0,
    space: Sequence[Parameter] = SEARCH_SPACE,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Random search: `trials` samples of `space`, each scored by `objective(params)` (lower is better).

    The real objective is `training_objective(dataset_uri, model_uri_root)`. A trial whose objective raises or returns
    a non-finite value is recorded as failed; all failing is an error.
    """
    if trials < 1:
        raise ValueError(f"local_search: trials must be >= 1, got {trials}")
    rng = random.Random(seed)
    results = []
    for index in range(trials):
        params = {parameter.name: parameter.sample(rng) for parameter in space}
        try:
            value = float(objective(params))
            if not math.isfinite(value):
                raise ValueError(f"objective returned {value}")
            results.append(Trial(index, params, value))
            log(f"trial {index}: {OBJECTIVE_METRIC}={value:.4f} {params}")
        except Exception as error:  # noqa: BLE001 -- a bad trial must not end the search
            results.append(Trial(index, params, None, f"{type(error).__name__}: {error}"))
            log(f"trial {index} failed: {type(error).__name__}: {error}")
    scored = [trial for trial in results if trial.value is not None]
    if not scored:
        raise RuntimeError(f"local_search: all {trials} trials failed; first error: {results[0].error}")
    return SearchResult(min(scored, key=lambda trial: trial.value), tuple(results))


def training_objective(
    dataset_uri: str,
    model_uri_root: str,
    model_config=None,
    train_config=None,
    space=SEARCH_SPACE,
) -> Callable[[dict[str, Any]], float]:
    """The real objective: train with the sampled parameters and return the final validation bits/sample."""
    if not dataset_uri or not model_uri_root:
        raise ValueError("training_objective needs dataset_uri and model_uri_root")
    counter = itertools.count()

    def objective(params: dict[str, Any]) -> float:
        from waveforms import model, train

        base_model = model_config or model.load_config("small")  # what `waveforms train` uses by default
        base_train = train_config or train.TrainConfig()
        tuned_model, tuned_train = apply_parameters(base_model, base_train, params, space)
        trial_uri = f"{model_uri_root}/trial-{next(counter):03d}"
        metrics = train.train(dataset_uri, trial_uri, tuned_model, tuned_train, progress=False)
        return metrics[OBJECTIVE_METRIC]

    return objective


# ---------------------------------------------------------------------------------------------- one entry point


TUNING_MODES = ("katib", "local", "off")


def tune(
    mode: str,
    dataset_uri: str,
    work_uri: str,
    *,
    model_config=None,
    train_config=None,
    trials: int = 3,
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    experiment: ExperimentOptions | None = None,
    timeout_seconds: float = 6 * 3600,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Best parameters of the search space for this dataset (empty for mode "off"): what the pipeline's `tune` step
    hands to the final `train`.

    local: random search here, each trial a real (short) training under WORK_URI/trial-NNN; `fixed` pins some
    parameters (e.g. batch size and window on a CPU) and the others are sampled from the same space.
    katib: the Experiment rendered from the same space, created in the cluster, waited for.
    """
    if mode not in TUNING_MODES:
        raise ValueError(f"tuning mode must be one of {', '.join(TUNING_MODES)}, got {mode!r}")
    if mode == "off":
        return {}
    if mode == "katib":
        options = dataclasses.replace(
            experiment or ExperimentOptions(), dataset_uri=dataset_uri, model_uri_root=work_uri
        )
        rendered = render_experiment(options)
        check_experiment(rendered)
        best = create_and_wait_experiment(rendered, timeout_seconds=timeout_seconds, log=log)
        return dict(best.parameters)
    fixed = dict(fixed or {})
    by_name = {parameter.name for parameter in SEARCH_SPACE}
    unknown = sorted(set(fixed) - by_name)
    if unknown:
        raise ValueError(f"fixed parameters {unknown} are not in the search space {sorted(by_name)}")
    sampled = tuple(parameter for parameter in SEARCH_SPACE if parameter.name not in fixed)
    objective = training_objective(dataset_uri, work_uri, model_config, train_config)
    result = local_search(
        lambda params: objective({**params, **fixed}), trials=trials, seed=seed, space=sampled, log=log
    )
    return {**result.best_parameters, **fixed}


# ---------------------------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tune_command", metavar="ACTION", required=True)
    write = sub.add_parser("write-experiment", help="render the Katib Experiment from the search space")
    write.add_argument("--output", type=Path, default=EXPERIMENT_PATH, help="where to write the Experiment")
    write.add_argument("--image", default=IMAGE_PLACEHOLDER, help="GPU image with an immutable tag")
    write.add_argument(
        "--algorithm", default=DEFAULT_ALGORITHM, choices=ALGORITHMS, help=f"Katib search (default {DEFAULT_ALGORITHM})"
    )
    write.add_argument("--check", action="store_true", help="exit 1 if the file differs from the rendering")

    local = sub.add_parser("local", help="random search over the same space on this machine")
    local.add_argument("dataset_uri", help="a converted dataset: manifest.json or its folder")
    local.add_argument("model_uri_root", help="each trial trains into MODEL_URI_ROOT/trial-NNN")
    local.add_argument("--trials", type=int, default=4, help="random trials to train and compare")
    local.add_argument("--seed", type=int, default=0, help="seed of the random search")
    local.add_argument(
        "--steps", type=int, default=None, help="training steps per trial (default: the trainer's default)"
    )


def run(args: argparse.Namespace) -> int:
    if args.tune_command == "write-experiment":
        text = experiment_yaml(render_experiment(ExperimentOptions(image=args.image, algorithm=args.algorithm)))
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
    from waveforms import convert, dataset, storage

    try:
        if args.trials < 1:
            raise ValueError(f"--trials must be at least 1, got {args.trials}")
        dataset.load_manifest(convert.manifest_uri(args.dataset_uri))  # a missing dataset fails before any trial
        train_config = None
        if args.steps is not None:
            from waveforms import train

            train_config = train.TrainConfig(steps=args.steps)
        objective = training_objective(args.dataset_uri, args.model_uri_root, train_config=train_config)
        result = local_search(objective, trials=args.trials, seed=args.seed,
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
