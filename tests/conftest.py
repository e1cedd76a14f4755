"""Shared fixtures. `s3_server`: one SeaweedFS per test session on 127.0.0.1, credentials enforced.

Use `s3_env` (function scope) to point storage.py at it for one test; pass `s3_server.env()` to subprocesses.
Each test should write under its own prefix (`s3_prefix`) so tests never see each other's objects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from s3server import SeaweedServer


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    bucket: str
    server: SeaweedServer  # the process handle (for restart-style tests that need their own instance, make a new one)

    def env(self) -> dict[str, str]:
        return self.server.env()


# Fixtures that start a real server process or a browser: every test using one (directly or through another fixture,
# e.g. s3_env, s3_prefix) is an integration test.
INTEGRATION_FIXTURES = {"s3_server", "browser"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield S3Server(server.endpoint, server.access_key, server.secret_key, server.bucket, server)
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The session server's variables set in os.environ for this test only (other S3 variables cleared)."""
    for name in (
        "S3_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "MINIO_ENDPOINT",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "accesskey",
        "secretkey",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    env = s3_server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_prefix(s3_server) -> str:
    """A fresh s3:// prefix (no trailing slash) in the session bucket for one test."""
    return f"s3://{s3_server.bucket}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium driven by playwright (never `playwright install`: it downloads a browser). Debian's
    /usr/bin/chromium unless WAVEFORMS_TEST_BROWSER names another Chromium-family executable."""
    import os

    from helpers import CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("WAVEFORMS_TEST_BROWSER", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass(frozen=True)
class DemoWaveNet:
    model_dir: str
    data_dir: str  # the converted dataset (shards + manifest.json)
    wav_dir: str  # the synth clips it was converted from
    train_result: dict  # what train() returned: val_bits, baselines, ...
    cpu_seconds: float  # of training


@pytest.fixture(scope="session")
def demo_wavenet(tmp_path_factory) -> DemoWaveNet:
    """`small` trained as `make demo` trains it: the demo's synth source options (its phrases) and its WaveNet
    training settings, the dataset converted with the pipeline's defaults. Shared by the quality and continuation
    tests, which measure what a user of the demo gets."""
    import contextlib
    import io
    import resource

    from pipelines.run_local import build_parser, demo_settings
    from waveforms import convert, synth
    from waveforms.model import NAMED_CONFIGS
    from waveforms.train import TrainConfig, train

    settings = demo_settings(build_parser().parse_args([]))
    options = settings["source_options"]
    root = tmp_path_factory.mktemp("demo-wavenet")
    wav_dir, data_dir, model_dir = (str(root / name) for name in ("wav", "data", "model"))
    synth.write_dataset(wav_dir, count=options["count"], seed=options["seed"], notes_per_clip=options["notes_per_clip"])
    convert.convert(wav_dir, data_dir, convert.ConvertConfig(), progress=False)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(data_dir, model_dir, NAMED_CONFIGS["small"], TrainConfig(**settings["wavenet_train"]),
                       progress=False)  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return DemoWaveNet(model_dir, data_dir, wav_dir, result, cpu)
