"""URIs everywhere: `soundspace` corners and output and `generate --seed-audio` accept s3:// (and minio://) through
storage.py, tested on SeaweedFS; nothing is written to a local folder named `s3:`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from helpers import TINY_AUTOENCODER, TINY_WAVENET, synth_dataset

from waveforms import storage
from waveforms.audio import write_wav
from waveforms.synth import Note, render_note
from waveforms.train import TrainConfig, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


def cli(*args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "waveforms.cli", *args],
        env={**os.environ, "PYTHONPATH": ROOT, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_soundspace_reads_corners_from_and_writes_to_object_storage(tmp_path, s3_env, s3_prefix):
    from helpers import save_autoencoder

    from waveforms.autoencoder import build_autoencoder

    save_autoencoder(build_autoencoder(TINY_AUTOENCODER), tmp_path / "model")
    corners = []
    for family in ("organ", "bell"):
        path = tmp_path / f"{family}.wav"
        write_wav(path, render_note(Note(family, 60, 100, 0), SR, seconds=0.5), SR)
        corners.append(storage.join(s3_prefix, "corners", family, f"{family}.wav"))  # the same base name twice is fine
        storage.upload_file(str(path), corners[-1])
    out = storage.join(s3_prefix, "space")
    result = cli("soundspace", str(tmp_path / "model"), out, "--corners", *corners, "--resolution", "3",
                 "--seconds", "0.25", "--format", "wav", env=s3_env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "s3:").exists()
    names = {uri.rsplit("/", 1)[-1] for uri in storage.list_files(out)}
    manifest = json.loads(storage.read_bytes(storage.join(out, "manifest.json")))
    assert manifest["corners"] == {"W": ["organ.wav"], "E": ["bell.wav"]}
    assert {entry["files"]["wav"] for entry in manifest["points"]} | {"manifest.json", "explorer.html"} == names
    assert len(manifest["points"]) == 3

    missing = cli("soundspace", str(tmp_path / "model"), out, "--corners", corners[0], s3_prefix + "/nope.wav",
                  "--resolution", "2", env=s3_env, cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1 and "nope.wav does not exist" in missing.stderr.splitlines()[-1], missing.stderr


def test_soundspace_to_an_unwritable_uri_fails_before_any_work(tmp_path, s3_env, s3_prefix):
    path = tmp_path / "organ.wav"
    write_wav(path, render_note(Note("organ", 60, 100, 0), SR, seconds=0.5), SR)
    result = cli("soundspace", str(tmp_path / "no-model"), s3_prefix + "/space", "--corners", str(path), str(path),
                 "--resolution", "2", env={**s3_env, "AWS_SECRET_ACCESS_KEY": "wrong"}, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1 and "refused access key id" in result.stderr.splitlines()[-1], result.stderr


@pytest.fixture(scope="module")
def wavenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("wavenet")
    data = synth_dataset(root, count=6, seed=1, seconds=0.5)
    config = TrainConfig(steps=2, batch_size=2, target_length=300, warmup_steps=0, eval_windows=2)
    with contextlib.redirect_stdout(io.StringIO()):
        train(data, str(root / "model"), TINY_WAVENET, config, progress=False)
    return root / "model"


def test_generate_takes_seed_audio_from_object_storage(wavenet, tmp_path, s3_env, s3_prefix):
    path = tmp_path / "seed.wav"
    write_wav(path, render_note(Note("reed", 64, 100, 0), SR, seconds=0.3), SR)
    seed = storage.join(s3_prefix, "seed.wav")
    storage.upload_file(str(path), seed)
    out = tmp_path / "out.wav"
    result = cli("generate", str(wavenet), str(out), "--seconds", "0.05", "--seed-audio", seed, "--no-progress",
                 env=s3_env, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 44
    missing = cli("generate", str(wavenet), str(out), "--seconds", "0.05", "--seed-audio", s3_prefix + "/nope.wav",
                  "--no-progress", env=s3_env, cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == f"error: --seed-audio {s3_prefix}/nope.wav: file not found"
