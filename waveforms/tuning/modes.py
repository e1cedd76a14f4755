"""One entry point for the pipeline's tune step: the best parameters of the search space by Katib, by a local search,
or none ("off")."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from waveforms.tuning.katib import ExperimentOptions, check_experiment, render_experiment
from waveforms.tuning.katib_client import create_and_wait_experiment
from waveforms.tuning.local import local_search, training_objective
from waveforms.tuning.space import SEARCH_SPACE

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
