"""Quiet by default: TensorFlow, XLA, absl and gRPC log only errors unless asked for more.

`configure(verbose)` sets the environment variables those libraries read when they start (so it must run before
TensorFlow is imported, and child processes, e.g. kfp.local's steps, inherit it) and quiets the Python loggers and
warnings that would otherwise fill a terminal. WAVEFORMS_LOG_LEVEL=info (or debug) shows them again, as --verbose does.
"""

from __future__ import annotations

import logging
import os
import warnings

LEVEL_VARIABLE = "WAVEFORMS_LOG_LEVEL"  # quiet (default) | info | debug


def configure(verbose: bool = False) -> str:
    """Apply the log level (--verbose, else WAVEFORMS_LOG_LEVEL, else quiet); -> the level applied."""
    level = "info" if verbose else os.environ.get(LEVEL_VARIABLE, "quiet").strip().lower()
    if level not in ("quiet", "info", "debug"):
        level = "quiet"
    os.environ[LEVEL_VARIABLE] = level
    quiet = level == "quiet"
    # TF C++ (oneDNN, XLA, StreamExecutor): 0 shows all, 1 hides INFO, 2 also WARNING (errors still show)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if quiet else ("0" if level == "debug" else "1")
    os.environ["GRPC_VERBOSITY"] = "ERROR" if quiet else "INFO"
    os.environ["ABSL_MIN_LOG_LEVEL"] = "2" if quiet else "0"  # absl C++ (XLA's own logging)
    for name in ("tensorflow", "absl", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR if quiet else logging.INFO)
    if quiet:
        os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]ompiled the loaded model.*")
    return level
