"""Generation that never collapses into silence: a WaveNet trained with the demo's settings on the demo's synth notes,
sampled with the CLI defaults, gives 10-s clips no 1-s window of which is silent against the training data's profile,
from the primer (the CLI default), from digital silence and from a held-out note, for several sampling seeds at once
(each batch row is its own random stream).

Before dataset.shorten_silences the same model died into digital silence (-81 dBFS) within a second from the primer
and never left silence (every clip "silent" or "silent after ..."): the notes end in long silent tails and start at
their record's first sample, so the model had only seen silence followed by more silence. The rest of the issue's bar
(not noise-like, not quiet) is not met by this 300-step model yet: its clips are quiet hiss at about -42 dBFS
(docs/quality.md); the verdicts are printed.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from helpers import synth_dataset

from waveforms import audio, dataset, model_store
from waveforms.generate import check_clips, generate
from waveforms.model import NAMED_CONFIGS
from waveforms.train import TrainConfig, train

SECONDS = 10.0
ROWS = 3  # sampling seeds per start, generated as one batch


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> tuple[str, str]:
    """`small` trained on the demo's dataset (40 synth notes, seed 0) with the demo's WaveNet training settings;
    -> (model dir, dataset dir)."""
    from pipelines.run_local import build_parser, demo_settings

    settings = demo_settings(build_parser().parse_args([]))
    data_dir = synth_dataset(tmp_path_factory.mktemp("synth"), count=40, seed=0, seconds=4.0, validation_fraction=0.1)
    model_dir = str(tmp_path_factory.mktemp("model") / "demo")
    with contextlib.redirect_stdout(io.StringIO()):
        train(data_dir, model_dir, NAMED_CONFIGS["small"], TrainConfig(**settings["wavenet_train"]), progress=False)
    return model_dir, data_dir


def held_out_note(data_dir: str, path: str, seconds: float = 0.5) -> str:
    """The first `seconds` of the first held-out note, written to `path`."""
    manifest_uri = f"{data_dir}/manifest.json"
    segment = next(dataset.iter_segments(dataset.load_manifest(manifest_uri), manifest_uri, "validation"))
    codes = np.frombuffer(segment.audio, dtype=np.uint8)[: int(seconds * 16000)]
    audio.write_wav(path, audio.mu_law_decode(codes), 16000)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("start", ["primer", "silence", "held-out note"])
def test_ten_seconds_of_the_demo_model_are_never_silent(demo_model, start, tmp_path, capsys):
    model_dir, data_dir = demo_model
    seed_audio = {"primer": None, "silence": ""}.get(start)  # None: the CLI default, the primer saved with the model
    if start == "held-out note":
        seed_audio = held_out_note(data_dir, str(tmp_path / "note.wav"))
    clips = generate(model_dir, SECONDS, batch=ROWS, seed_audio=seed_audio, seed=0)  # the CLI's default sampling
    assert clips.shape == (ROWS, int(SECONDS * 16000))
    checks = check_clips(clips, model_store.read_export(model_dir))
    with capsys.disabled():
        print(f"\n{start}: " + " | ".join(check.verdict for check in checks))
    silent = [check.verdict for check in checks if any(problem.startswith("silent") for problem in check.problems)]
    assert not silent, silent
