"""The pipeline's stage functions (waveforms/stages.py), called as components/ call them, on tiny local data: options as
KFP hands them over (every number of a dict parameter a float), files where the next step looks for them."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
from helpers import TINY_AUTOENCODER, TINY_WAVENET, synth_dataset

from waveforms import audio, generate, stages, synth, tuning
from waveforms.manifest import load_dataset_manifest
from waveforms.tasks import DEFAULT_TRAIN_SETTINGS
from waveforms.train import TrainConfig

SAMPLE_RATE = 16000
# TrainConfig fields as a KFP dict parameter delivers them: whole numbers as floats
TINY_TRAIN_OPTIONS = {"steps": 2.0, "batch_size": 2.0, "target_length": 300.0, "warmup_steps": 0.0, "eval_windows": 2.0}


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """The synth notes: <root>/wav/<family>/<note>.wav, converted into <root>/data."""
    root = tmp_path_factory.mktemp("stages")
    data = synth_dataset(root, count=8, seed=1, seconds=1.0)
    return {"wav": str(root / "wav"), "data": data, "root": root}


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    paths = {"wavenet": folder / "tiny-wavenet.json", "autoencoder": folder / "tiny-autoencoder.json"}
    paths["wavenet"].write_text(json.dumps(TINY_WAVENET.to_dict()))
    paths["autoencoder"].write_text(json.dumps(TINY_AUTOENCODER.to_dict()))
    return {kind: str(path) for kind, path in paths.items()}


def _quietly(function, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def wavenet(songs, config_files, tmp_path_factory):
    root = tmp_path_factory.mktemp("wavenet")
    work, model_dir = str(root / "work"), str(root / "model")
    page, metrics = _quietly(
        stages.train_stage, songs["data"], work, model_dir, config=config_files["wavenet"],
        train_options=TINY_TRAIN_OPTIONS, tuned={"residual_channels": 16.0, "learning_rate": 0.002},
    )  # fmt: skip
    return {"work": work, "model": model_dir, "page": page, "metrics": metrics}


def test_configs_come_from_a_preset_or_file_with_kfp_floats_and_tuned_values_typed(config_files):
    model_config, train_config = stages.model_and_train_configs(
        "wavenet", config_files["wavenet"], {"steps": 30.0, "batch_size": 4.0}, tuned={"layers_per_stack": 7.0}
    )
    assert (train_config.steps, train_config.batch_size) == (30, 4)
    assert type(train_config.steps) is int and type(model_config.layers_per_stack) is int
    assert model_config.layers_per_stack == 7 and model_config.residual_channels == TINY_WAVENET.residual_channels
    assert train_config.learning_rate == TrainConfig().learning_rate  # untouched fields keep their defaults
    autoencoder_config, autoencoder_train = stages.model_and_train_configs(
        "autoencoder", config_files["autoencoder"], {}
    )
    assert autoencoder_config == TINY_AUTOENCODER
    # the kind's own learning rate, as `waveforms train --model autoencoder` uses it; an explicit option wins
    assert autoencoder_train.learning_rate == DEFAULT_TRAIN_SETTINGS["autoencoder"]["learning_rate"]
    assert autoencoder_train.learning_rate != TrainConfig().learning_rate
    _, explicit = stages.model_and_train_configs("autoencoder", "default", {"learning_rate": 0.002})
    assert explicit.learning_rate == 0.002
    with pytest.raises(ValueError, match="steps"):
        stages.model_and_train_configs("wavenet", "small", {"steps": 2.5})  # not a whole number
    with pytest.raises(ValueError, match="no_such_field"):
        stages.model_and_train_configs("wavenet", "small", {"no_such_field": 1})


@pytest.mark.slow
def test_tune_stage_off_searches_nothing_and_local_trains_each_trial(songs, tmp_path):
    assert stages.tune_stage("off", songs["data"], str(tmp_path / "unused")) == {}
    assert not (tmp_path / "unused").exists()
    fixed = {"batch_size": 2.0, "target_length": 300.0, "layers_per_stack": 3.0, "residual_channels": 8.0}
    best = _quietly(
        stages.tune_stage, "local", songs["data"], str(tmp_path / "trials"), trial_steps=2.0, trials=2.0, seed=1.0,
        fixed=fixed, train_options={"warmup_steps": 0.0, "eval_windows": 2.0, "eval_every": 50.0},
    )  # fmt: skip
    assert best["batch_size"] == 2 and type(best["batch_size"]) is int  # fixed values come back typed
    assert best["layers_per_stack"] == 3 and best["residual_channels"] == 8
    (space,) = [parameter for parameter in tuning.SEARCH_SPACE if parameter.name == "learning_rate"]
    assert space.low <= best["learning_rate"] <= space.high  # the one sampled parameter, from the search space
    trials = sorted(os.listdir(tmp_path / "trials"))
    assert trials == ["trial-000", "trial-001"]
    scored = {}
    for trial in trials:  # eval_every was capped at the trial's 2 steps: each trial reported its objective
        with open(tmp_path / "trials" / trial / "metrics.json") as handle:
            val_bits = json.load(handle)["final"]["val_bits"]
        with open(tmp_path / "trials" / trial / "config.json") as handle:
            scored[json.load(handle)["train"]["learning_rate"]] = val_bits
    assert len(scored) == 2 and all(np.isfinite(value) for value in scored.values())
    assert best["learning_rate"] == min(scored, key=scored.get)  # the better trial's value is handed on


def test_train_stage_exports_the_model_into_the_artifact_and_reports_the_run(wavenet):
    names = set(os.listdir(wavenet["model"]))
    assert {"config.json", "model.keras", "metrics.json"} <= names
    with open(os.path.join(wavenet["model"], "config.json")) as handle:
        exported = json.load(handle)
    assert exported["model"]["residual_channels"] == 16  # the tuned value, typed, replaced the file's 8
    assert exported["model"]["layers_per_stack"] == TINY_WAVENET.layers_per_stack
    assert exported["train"]["steps"] == 2 and exported["train"]["learning_rate"] == 0.002
    metrics = wavenet["metrics"]
    assert np.isfinite(metrics["val_bits"]) and metrics["receptive_field"] == TINY_WAVENET.receptive_field
    assert "val_bits" in "".join(html for _, html, _ in wavenet["page"].sections)
    # the work folder keeps the checkpoints, so a retried pod resumes there
    assert os.listdir(os.path.join(wavenet["work"], "checkpoints"))


def test_generate_stage_writes_wav_and_mp3_per_clip_and_continues_a_held_out_clip(wavenet, songs, tmp_path):
    out = tmp_path / "generated"
    page, metrics = stages.generate_stage(
        wavenet["model"], str(out), seconds=0.05, batch=2.0, seed=3.0, seed_dataset=songs["data"], seed_seconds=0.1
    )
    assert sorted(os.listdir(out)) == ["generated-00.mp3", "generated-00.wav", "generated-01.mp3", "generated-01.wav",
                                       "seed.wav"]  # fmt: skip
    seed_clip = audio.decode(out / "seed.wav", SAMPLE_RATE, normalize=False)
    assert len(seed_clip) == int(0.1 * SAMPLE_RATE)
    for index in range(2):
        wav = audio.decode(out / f"generated-{index:02d}.wav", SAMPLE_RATE, normalize=False)
        assert len(wav) == int(0.05 * SAMPLE_RATE)
        assert abs(len(audio.decode(out / f"generated-{index:02d}.mp3", SAMPLE_RATE)) - len(wav)) <= 1
    assert metrics["clips_ok"] + metrics["clips_silent"] + metrics["clips_noise_like"] <= 2
    assert {"mean_rms", "mean_spectral_flatness"} <= set(metrics) and metrics["mean_rms"] >= 0
    assert "first 0.1 s of a held-out clip" in "".join(html for _, html, _ in page.sections)


def test_generate_stage_samples_with_the_clis_candidates_and_names_them_on_its_page(wavenet, tmp_path):
    """particles and sharpen reach the sampler unchanged: the stage writes what `waveforms generate` returns."""
    settings = {"seconds": 0.05, "batch": 2, "temperature": 1.0, "seed": 5}
    page, _ = stages.generate_stage(wavenet["model"], str(tmp_path / "many"), particles=4, sharpen=1.0, **settings)
    expected = generate.generate(wavenet["model"], 0.05, batch=2, temperature=1.0, seed=5, particles=4, sharpen=1.0)
    plain = generate.generate(wavenet["model"], 0.05, batch=2, temperature=1.0, seed=5)
    for index in range(2):
        written = audio.decode(tmp_path / "many" / f"generated-{index:02d}.wav", SAMPLE_RATE, normalize=False)
        np.testing.assert_allclose(written, expected[index], atol=2 / 32768)  # 16-bit WAV
    assert not np.allclose(expected, plain)  # the candidates changed the clips: the setting was not dropped
    assert "4, resampled by likelihood^1.0" in "".join(html for _, html, _ in page.sections)
    with pytest.raises(ValueError, match="--particles: got 2.5"):  # refused, not truncated to 2
        stages.generate_stage(wavenet["model"], str(tmp_path / "half"), particles=2.5, **settings)
    with pytest.raises(ValueError, match="--particles: got 0"):
        stages.generate_stage(wavenet["model"], str(tmp_path / "none"), particles=0, **settings)


def test_held_out_clip_is_the_start_of_a_validation_song(songs):
    clip = stages.held_out_clip(songs["data"], 0.2)
    assert clip.shape == (int(0.2 * SAMPLE_RATE),) and clip.dtype == np.float32
    manifest = load_dataset_manifest(songs["data"])[1]
    validation = [song for song in manifest["songs"] if song["split"] == "validation"]
    assert validation
    assert np.max(np.abs(clip)) > 0.1  # a note, not silence
    # one validation song starts with this audio (peak-normalised like convert does), up to one mu-law step (at most
    # about 0.04 near full scale)
    errors = []
    for song in validation:
        source = audio.decode(os.path.join(songs["wav"], song["song_id"]), SAMPLE_RATE)[: len(clip)]
        errors.append(float(np.max(np.abs(audio.mu_law_decode(audio.mu_law_encode(source)) - clip))))
    assert min(errors) < 0.05, errors


def test_corners_stage_writes_both_spaces_and_refuses_a_bad_request_before_writing(songs, tmp_path):
    labels = stages.corners_stage(songs["wav"], str(tmp_path / "corners"), corners_2=[], corners_4=[], seconds=0.25)
    assert [len(labels["2"]), len(labels["4"])] == [2, 4]
    families = set(synth.FAMILIES)
    assert all(label.split(":")[0] in families for label in labels["2"] + labels["4"])
    for count in ("2", "4"):
        folder = tmp_path / "corners" / count
        with open(folder / "corners.json") as handle:
            chosen = json.load(handle)["corners"]
        for corner in chosen:
            excerpt = audio.decode(folder / corner["file"], SAMPLE_RATE, normalize=False)
            assert len(excerpt) == int(0.25 * SAMPLE_RATE) and np.max(np.abs(excerpt)) > 0.01
    with pytest.raises(ValueError, match="neither a genre nor a song"):
        stages.corners_stage(songs["wav"], str(tmp_path / "bad"), corners_2=["organ", "no-such-genre"], corners_4=[],
                             seconds=0.25)  # fmt: skip
    assert not (tmp_path / "bad").exists()  # both requests are checked before either space is written


@pytest.mark.slow
def test_soundspace_stage_decodes_a_trained_autoencoder_between_the_corners(songs, config_files, tmp_path):
    model_dir = str(tmp_path / "autoencoder")
    _quietly(
        stages.train_stage, songs["data"], str(tmp_path / "work"), model_dir, model_kind="autoencoder",
        config=config_files["autoencoder"], train_options=TINY_TRAIN_OPTIONS,
    )  # fmt: skip
    stages.corners_stage(songs["wav"], str(tmp_path / "corners"), corners_2=[], corners_4=[], seconds=0.25)
    manifest = stages.soundspace_stage(
        model_dir, str(tmp_path / "corners" / "2"), str(tmp_path / "space"), resolution=3.0, seconds=0.1, run_name="r1"
    )
    points = manifest["points"]
    assert len(points) == 3  # resolution points along the W-E path
    for point in points:
        clip = audio.decode(tmp_path / "space" / f"{point['name']}.wav", SAMPLE_RATE, normalize=False)
        assert len(clip) == int(0.1 * SAMPLE_RATE)
        assert "check" in point  # every point judged against the training data's profile
    assert not list((tmp_path / "space").glob("*.mp3"))  # the pipeline's sound spaces are WAV only
    page = (tmp_path / "space" / "explorer.html").read_text()
    assert "run r1" in page and "2 corners" in page
