"""`make install` as a new user meets it: prerequisites checked before the long pip install, and a failed install
leaves nothing that makes the next run skip a step. Python and pip are stand-ins that record what they were asked."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_PYTHON = """#!/bin/sh
# stands in for python3.11: `-m venv DIR` makes DIR/bin/pip (which exits with $PIP_STATUS), anything else is real Python
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  echo "venv $3" >> "$CALLS"
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\necho "pip $*" >> "$CALLS"\\nexit ${PIP_STATUS:-0}\\n' > "$3/bin/pip"
  chmod +x "$3/bin/pip"
  exit 0
fi
exec PYTHON "$@"
"""


@pytest.fixture
def sandbox(tmp_path):
    """A PATH with the basic tools, a stand-in python3.11 and (per test) ffmpeg or not."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("uname", "rm", "touch", "mkdir", "chmod", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    python = bin_dir / "python3.11"
    python.write_text(FAKE_PYTHON.replace("PYTHON", sys.executable))
    python.chmod(python.stat().st_mode | stat.S_IXUSR)

    def make(*, ffmpeg: bool, pip_status: int = 0) -> subprocess.CompletedProcess:
        for tool in ("ffmpeg", "ffprobe"):
            link = bin_dir / tool
            if ffmpeg and not link.exists():
                os.symlink(shutil.which(tool), link)
            if not ffmpeg and link.exists():
                link.unlink()
        env = {"PATH": str(bin_dir), "CALLS": str(tmp_path / "calls"), "PIP_STATUS": str(pip_status),
               "HOME": str(tmp_path)}  # fmt: skip
        return subprocess.run([shutil.which("make"), "-C", ROOT, "install", f"VENV={tmp_path / 'venv'}"],
                              capture_output=True, text=True, env=env, timeout=60)  # fmt: skip

    return make, tmp_path


def _calls(tmp_path) -> str:
    path = tmp_path / "calls"
    return path.read_text() if path.exists() else ""


def test_missing_ffmpeg_is_reported_before_any_install(sandbox):
    make, tmp_path = sandbox
    result = make(ffmpeg=False)
    assert result.returncode != 0 and "ffmpeg/ffprobe are missing" in result.stdout
    assert _calls(tmp_path) == "" and not (tmp_path / "venv").exists()


def test_a_failed_install_removes_the_venv_and_the_next_run_installs_again(sandbox):
    make, tmp_path = sandbox
    failed = make(ffmpeg=True, pip_status=1)
    assert failed.returncode != 0 and "the install failed" in failed.stdout
    assert not (tmp_path / "venv").exists()
    done = make(ffmpeg=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "venv" / ".installed").exists()
    assert _calls(tmp_path).count("venv ") == 2 and "pip install --quiet -r requirements/dev.lock" in _calls(tmp_path)
    again = make(ffmpeg=True)  # up to date: nothing runs
    assert again.returncode == 0 and _calls(tmp_path).count("venv ") == 2


def test_test_fast_leaves_out_integration_and_slow_tests_and_test_runs_everything(tmp_path):
    """Dry runs (make -n) against an installed-looking venv: the targets' pytest commands, the markers registered."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp = venv / ".installed"
    stamp.touch()
    newest = max(os.path.getmtime(os.path.join(ROOT, name)) for name in
                 ("pyproject.toml", "requirements/runtime.lock", "requirements/dev.lock"))  # fmt: skip
    os.utime(stamp, (newest + 60, newest + 60))  # up to date: the dry run shows only the target's own command

    def dry_run(target: str) -> str:
        # PYTEST_ARGS= so that a calling `make test PYTEST_ARGS=...` (which exports it) does not reach the dry run
        result = subprocess.run([shutil.which("make"), "-n", "-C", ROOT, target, f"VENV={venv}", "PYTEST_ARGS="],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert f'{venv}/bin/python -m pytest -m "not integration and not slow"' in dry_run("test-fast")
    (full,) = [line for line in dry_run("test").splitlines() if "pytest" in line]
    assert full.strip() == f"{venv}/bin/python -m pytest"  # every test, no marker expression
    assert "--output manifests/katib/experiment.yaml" in dry_run("manifests-check")
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        markers = tomllib.load(handle)["tool"]["pytest"]["ini_options"]["markers"]
    assert {marker.split(":")[0] for marker in markers} == {"integration", "slow"}
