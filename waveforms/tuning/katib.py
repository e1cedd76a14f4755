"""The search space as a Katib v1beta1 Experiment: TPE by default, median stopping, one GPU Job per trial running
`waveforms train`; the algorithm settings each Katib suggestion service accepts; the offline checks (Katib's SDK model
and those settings). `waveforms tune write-experiment` writes the default rendering to manifests/katib/experiment.yaml.

Katib reads metrics from the trial's stdout and stderr: `waveforms train --trial` prints `name=value` pairs only on its
evaluation lines (`step=200 train_bits=5.31 val_bits=5.12 ...`) and its final line (the last evaluation's val_bits again).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from waveforms.cluster import CREDENTIAL_KEYS, CREDENTIALS_SECRET, GENERIC_GPU_SELECTOR, GPU_RESOURCE, GPU_TOLERATION
from waveforms.tuning.space import ADDITIONAL_METRICS, OBJECTIVE_METRIC, SEARCH_SPACE, Parameter

# Katib's default StdOut filter, written out so the contract with `waveforms train` output is visible and tested.
METRICS_FORMAT = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
KATIB_GROUP, KATIB_VERSION, KATIB_PLURAL = "kubeflow.org", "v1beta1", "experiments"
PRIMARY_CONTAINER = "training"
IMAGE_PLACEHOLDER = "waveforms-gpu"  # replaced by the kustomize `images:` entry at deploy time (docs/cluster.md)


# ------------------------------------------------------------------------------------------------ algorithm settings
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


# ------------------------------------------------------------------------------------------------------ rendering


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


def parameter_spec(parameter: Parameter, grid: bool = False) -> dict:
    """Katib's spec of one parameter; `grid`: a double becomes a discrete list (Katib's grid needs finite values)."""
    if grid and parameter.kind == "double":
        values = [repr(value) for value in parameter.grid_values(GRID_POINTS)]
        return {"name": parameter.name, "parameterType": "discrete", "feasibleSpace": {"list": values}}
    if parameter.kind in ("double", "int"):
        space = {
            "min": _katib_number(parameter.low, parameter.kind),
            "max": _katib_number(parameter.high, parameter.kind),
        }
        if parameter.kind == "double":
            space["distribution"] = "logUniform" if parameter.log_scale else "uniform"
    else:
        space = {"list": [str(value) for value in parameter.values]}
    return {"name": parameter.name, "parameterType": parameter.kind, "feasibleSpace": space}


def _katib_number(value: float, kind: str) -> str:
    return str(int(value)) if kind == "int" else repr(float(value))


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
            "parameters": [parameter_spec(parameter, grid=options.algorithm == "grid") for parameter in space],
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
    header = "# Generated by `waveforms tune write-experiment` from waveforms/tuning (space.py, katib.py). Do not edit by hand.\n"
    return header + yaml.safe_dump(experiment, sort_keys=False, width=120)
