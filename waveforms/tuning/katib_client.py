"""Katib from inside a pipeline step: create the Experiment, wait for it, return its best trial (the Kubernetes
CustomObjects API; in-cluster credentials, else the kube config)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waveforms.tuning.katib import KATIB_GROUP, KATIB_PLURAL, KATIB_VERSION
from waveforms.tuning.space import OBJECTIVE_METRIC, SEARCH_SPACE, parameters_from_assignments


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
