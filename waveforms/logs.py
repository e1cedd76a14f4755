"""Quiet by default: TensorFlow, XLA, absl and gRPC log only errors unless asked for more.

`configure(verbose)` sets the environment variables those libraries read when they start (so it must run before
TensorFlow is imported, and child processes, e.g. kfp.local's steps, inherit it) and quiets the Python loggers and
warnings that would otherwise fill a terminal. WAVEFORMS_LOG_LEVEL=info (or debug) shows them again, as --verbose does.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
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


# absl's C++ logging (XLA, TF 2.16) ignores TF_CPP_MIN_LOG_LEVEL before absl::InitializeLog(), which TF never calls:
# its lines (`I0000 00:00:1795989819.779724   27945 service.cc:145] ...`) can only be dropped from the stream itself
_NATIVE_LINE = re.compile(rb"([IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\]|WARNING: All log messages before absl)")
_HEAD_TEMPLATE = b"X0000 00:00:0"  # X: I, W or E; 0: a digit
_ABSL_WARNING = b"WARNING: All log messages before absl"


def _may_be_native(fragment: bytes) -> bool:
    """Whether an unterminated fragment is, or may still become, the start of a native log line."""
    if fragment.startswith(_ABSL_WARNING[: len(fragment)]) or fragment.startswith(_ABSL_WARNING):
        return True
    for byte, kind in zip(fragment, _HEAD_TEMPLATE, strict=False):
        expected = b"IWE" if kind == ord("X") else b"0123456789" if kind == ord("0") else bytes([kind])
        if byte not in expected:
            return False
    return True


def split_native(pending: bytes) -> tuple[bytes, bytes]:
    """(text to pass on, bytes to hold until more arrive) of a stderr stream, without its native log lines. Lines end
    at a newline or a carriage return (progress bars); text that cannot start a log line is passed on at once."""
    out = []
    while pending:
        ends = [i for i in (pending.find(b"\n"), pending.find(b"\r")) if i >= 0]
        if ends:
            line, pending = pending[: min(ends) + 1], pending[min(ends) + 1 :]
            native = _NATIVE_LINE.search(line)  # may follow a progress bar's text on the same line
            out.append(line[: native.start()] if native else line)
        elif _may_be_native(pending):
            break
        else:
            out.append(pending)
            pending = b""
    return b"".join(out), pending


def filter_native_logs() -> None:
    """Route this process's stderr (fd 2) through a thread that drops absl/XLA C++ log lines and passes everything
    else on as it comes. Restored at exit, after the last line is through."""
    if getattr(filter_native_logs, "installed", False):
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    terminal = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            text, pending = split_native(pending + chunk)
            if text:
                os.write(terminal, text)
        if pending and not _NATIVE_LINE.search(pending):
            os.write(terminal, pending)

    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(terminal, 2)  # the pipe's last writer closes: the pump drains it and ends
        thread.join(timeout=5)

    atexit.register(restore)
    filter_native_logs.installed = True
