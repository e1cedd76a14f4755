"""Quiet by default: TensorFlow's and XLA's C++ logs stay out of a terminal unless asked for."""

import os
import subprocess
import sys

import pytest

from waveforms import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XLA_LINE = b"I0000 00:00:1795989937.590503   30609 service.cc:145] XLA service 0x7f2f initialized for platform Host\n"


def test_split_native_drops_log_lines_and_passes_everything_else_at_once():
    assert logs.split_native(b"error: no such file\n" + XLA_LINE + b"done\n") == (b"error: no such file\ndone\n", b"")
    # a progress bar (carriage returns, no newline) is passed on at once, even with a log line glued to it
    assert logs.split_native(b"\rtrain:  10%|#  | 1/10" + XLA_LINE) == (b"\rtrain:  10%|#  | 1/10", b"")
    assert logs.split_native(b"\rtrain:  20%") == (b"\rtrain:  20%", b"")
    # the start of a log line is held until its end decides
    assert logs.split_native(XLA_LINE[:20]) == (b"", XLA_LINE[:20])
    assert logs.split_native(b"WARNING: All log messages before absl::InitializeLog() is called\nok") == (b"ok", b"")
    assert logs.split_native(b"Input file: a.wav\n") == (b"Input file: a.wav\n", b"")  # 'I' then not a digit


@pytest.mark.integration
def test_a_process_that_compiles_with_xla_prints_only_its_own_lines(tmp_path):
    program = (
        "import sys\nfrom waveforms import logs\nlogs.configure()\nlogs.filter_native_logs()\n"
        "import tensorflow as tf\ntf.function(jit_compile=True)(lambda x: x * 2)(tf.constant([1.0]))\n"
        "print('error: the one line', file=sys.stderr)\nsys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop(logs.LEVEL_VARIABLE, None)
    quiet = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=120, env=env)
    assert quiet.returncode == 3 and quiet.stderr.decode() == "error: the one line\n", quiet.stderr[-2000:]
    env[logs.LEVEL_VARIABLE] = "info"
    loud = subprocess.run([sys.executable, "-c", program.replace("logs.filter_native_logs()\n", "")],
                          capture_output=True, timeout=120, env=env)  # fmt: skip
    assert b"XLA" in loud.stderr or b"oneDNN" in loud.stderr  # the logs exist: the quiet run really hid them
