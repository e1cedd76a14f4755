"""Hyperparameter tuning: one search space, three ways to search it.

- `space.py`: the search space (what may be tuned, sampling, parsing, applying values to the configurations);
- `katib.py`: the space rendered as a Katib v1beta1 Experiment, and its offline checks (`waveforms tune
  write-experiment` writes the default rendering); `katib_client.py`: create it from a pipeline step and wait for the
  best trial;
- `local.py`: random search of the same space on this machine (`tuning=local`: the demo and the tests);
- `modes.py`: `tune(mode, ...)`, the pipeline's one entry point; `cli.py`: the `waveforms tune` command.

The names below are what the rest of waveforms, components/ and the tests use.
"""

from waveforms.tuning.katib import (
    ALGORITHMS,
    IMAGE_PLACEHOLDER,
    KATIB_ALGORITHMS,
    KATIB_EARLY_STOPPING,
    ExperimentOptions,
    check_experiment,
    experiment_yaml,
    render_experiment,
)
from waveforms.tuning.katib_client import ExperimentError, create_and_wait_experiment
from waveforms.tuning.local import local_search
from waveforms.tuning.modes import tune
from waveforms.tuning.space import SEARCH_SPACE, Parameter, apply_parameters, parameters_from_assignments

__all__ = [
    "ALGORITHMS",
    "IMAGE_PLACEHOLDER",
    "KATIB_ALGORITHMS",
    "KATIB_EARLY_STOPPING",
    "SEARCH_SPACE",
    "ExperimentError",
    "ExperimentOptions",
    "Parameter",
    "apply_parameters",
    "check_experiment",
    "create_and_wait_experiment",
    "experiment_yaml",
    "local_search",
    "parameters_from_assignments",
    "render_experiment",
    "tune",
]
