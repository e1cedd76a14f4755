"""The one search space: what may be tuned, how each value is sampled and parsed, and how a set of values is applied to
the model and training configurations. Katib (katib.py) and the local search (local.py) both search exactly this."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OBJECTIVE_METRIC = "val_bits"  # validation negative log-likelihood, bits per sample: lower is better
ADDITIONAL_METRICS = ("train_bits",)
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


# The one search space. Lengths are in samples at 16 kHz; channels and batch sizes stay powers of two for the GPU.
SEARCH_SPACE: tuple[Parameter, ...] = (
    Parameter("learning_rate", "double", "train", low=1e-3, high=1e-1, log_scale=True),
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
