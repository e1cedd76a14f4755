"""Random search of the same space on this machine (`tuning=local`: the demo and the tests); each trial a real, short
training."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from waveforms.tuning.space import OBJECTIVE_METRIC, SEARCH_SPACE, Parameter, apply_parameters


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
