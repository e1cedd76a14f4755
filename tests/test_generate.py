"""Generation: the library call and the `waveforms generate` command on tiny models trained here for two steps."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_WAVENET as TINY
from helpers import synth_dataset

from waveforms import audio, audio_checks, cli
from waveforms.fastgen import SILENCE_CODE
from waveforms.generate import generate, load_model, output_paths
from waveforms.manifest import iter_segments
from waveforms.train import TrainConfig, train

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    return synth_dataset(tmp_path_factory.mktemp("synth"), count=8, seed=1, seconds=1.0)


@pytest.fixture(scope="module")
def model_dir(data_dir, tmp_path_factory) -> str:
    model_dir = str(tmp_path_factory.mktemp("model") / "tiny")
    config = TrainConfig(steps=2, batch_size=2, target_length=300, warmup_steps=0, eval_windows=2)
    with contextlib.redirect_stdout(io.StringIO()):
        train(data_dir, model_dir, TINY, config, progress=False)
    return model_dir


def test_generate_returns_seeded_reproducible_audio_of_the_requested_length(model_dir):
    clips = generate(model_dir, seconds=0.05, batch=2, seed=3)
    assert clips.shape == (2, 800) and clips.dtype == np.float32
    assert np.all(np.abs(clips) <= 1.0)
    np.testing.assert_array_equal(clips, generate(model_dir, seconds=0.05, batch=2, seed=3))
    assert not np.array_equal(clips, generate(model_dir, seconds=0.05, batch=2, seed=4))
    assert not np.array_equal(clips[0], clips[1]), "batch rows must be sampled independently"


def test_particles_through_the_cli_are_seeded_and_differ_from_plain_sampling(model_dir, tmp_path):
    out = tmp_path / "p.wav"
    flags = ["--seconds", "0.1", "--batch", "2", "--particles", "4", "--no-progress"]
    assert cli.main(["generate", model_dir, str(out), *flags]) == 0
    written = [audio.decode(path, SAMPLE_RATE, normalize=False) for path in output_paths(str(out), 2)]
    clips = generate(model_dir, seconds=0.1, batch=2, particles=4)
    assert clips.shape == (2, 1600)
    for row, clip in zip(written, clips, strict=True):
        np.testing.assert_allclose(row, audio.limit_peak(clip), atol=2 / 32768)
    assert not np.array_equal(clips, generate(model_dir, seconds=0.1, batch=2))


def test_generation_can_start_from_a_clip(model_dir, tmp_path):
    seed_clip = tmp_path / "seed.wav"
    audio.write_wav(seed_clip, 0.5 * np.sin(np.arange(4000) * 2 * np.pi * 440 / SAMPLE_RATE), SAMPLE_RATE)
    # at a low temperature the model's own preferences decide, not the sampling noise (the same for both: seed 0)
    from_clip = generate(model_dir, seconds=0.02, seed_audio=str(seed_clip), seed=0, temperature=1e-4)
    from_silence = generate(model_dir, seconds=0.02, seed=0, temperature=1e-4)
    assert from_clip.shape == from_silence.shape == (1, 320)
    assert not np.array_equal(from_clip, from_silence), "the seed clip must condition what follows"
    short_clip = tmp_path / "short.wav"  # shorter than the receptive field: padded with silence in front
    audio.write_wav(short_clip, np.full(5, 0.3, np.float32), SAMPLE_RATE)
    assert generate(model_dir, seconds=0.01, seed_audio=str(short_clip)).shape == (1, 160)


def test_load_model_rebuilds_the_exported_model(model_dir):
    model, config = load_model(model_dir)
    assert config == TINY
    assert model.get_layer("output_logits").get_weights()[0].shape == (16, 256)
    with pytest.raises(ValueError, match="no config.json; is it the MODEL_URI of a finished `waveforms train` run"):
        load_model(str(Path(model_dir) / "missing"))


def test_cli_writes_one_file_per_batch_row_as_wav_or_mp3(model_dir, tmp_path, capsys):
    out = tmp_path / "song.wav"
    assert cli.main(["generate", model_dir, str(out), "--seconds", "0.1", "--batch", "2", "--no-progress"]) == 0
    for path in output_paths(str(out), 2):
        assert path.endswith(("song-0.wav", "song-1.wav"))
        with wave.open(path) as clip:
            assert (clip.getframerate(), clip.getnframes(), clip.getnchannels()) == (SAMPLE_RATE, 1600, 1)
    assert not out.exists()
    mp3 = tmp_path / "song.mp3"
    assert cli.main(["generate", model_dir, str(mp3), "--seconds", "0.5", "--no-progress"]) == 0
    assert audio.probe(mp3).duration == pytest.approx(0.5, abs=0.1)  # mp3 frames pad the end
    assert "wrote" in capsys.readouterr().out


def test_cli_defaults_report_the_verdict_the_checks_give_the_written_file(model_dir, tmp_path, capsys):
    """What a user runs: `waveforms generate MODEL out.wav --seconds 1`, nothing else; stderr names each clip's verdict."""
    out = tmp_path / "out.wav"
    assert cli.main(["generate", model_dir, str(out), "--seconds", "1"]) == 0
    generated = generate(model_dir, 1.0)[0]  # the same defaults: seed 0, the model's primer
    written = audio.decode(out, SAMPLE_RATE, normalize=False)
    np.testing.assert_allclose(written, audio.limit_peak(generated), atol=2 / 32768)  # the file is what was checked
    export = json.loads((Path(model_dir) / "config.json").read_text())
    profile = audio_checks.DataProfile.from_dict(export["data_profile"])
    expected = audio_checks.check_clip(generated, SAMPLE_RATE, profile)  # before the peak limit: saturation shows
    assert export["data_profile"]["windows"] > 0  # the training data's profile travels with the model
    assert f"check {out}: {expected.verdict}" in capsys.readouterr().err.splitlines()


def test_a_model_that_only_predicts_silence_is_reported_silent(model_dir, tmp_path, capsys):
    silent_dir = tmp_path / "silent"
    shutil.copytree(model_dir, silent_dir)
    model, _ = load_model(str(silent_dir))
    layer = model.get_layer("output_logits")
    kernel, bias = layer.get_weights()
    bias[:] = -50.0
    bias[SILENCE_CODE] = 50.0  # every step samples the silence code
    layer.set_weights([np.zeros_like(kernel), bias])
    model.save(silent_dir / "model.keras")
    out = tmp_path / "silence.wav"
    assert cli.main(["generate", str(silent_dir), str(out), "--seconds", "1", "--no-progress"]) == 0
    assert f"check {out}: silent" in capsys.readouterr().err.splitlines()


def test_the_model_carries_a_primer_of_training_audio_and_generation_continues_it(
    model_dir, data_dir, tmp_path, capsys
):
    primer = audio.decode(Path(model_dir) / "primer.wav", SAMPLE_RATE, normalize=False)
    assert primer.size >= TINY.receptive_field and np.sqrt(np.mean(primer**2)) > 10 ** (-50 / 20)
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    codes = audio.mu_law_encode(primer).tobytes()
    owners = {segment.song_id: segment for split in ("train", "validation")
              for segment in iter_segments(manifest, f"{data_dir}/manifest.json", split) if codes in segment.audio}  # fmt: skip
    splits = {song["song_id"]: song["split"] for song in manifest["songs"]}
    assert owners and all(splits[song_id] == "train" for song_id in owners)  # never held-out audio
    # the default continues the primer; --from-silence does not
    np.testing.assert_array_equal(generate(model_dir, 0.1, seed=3),
                                  generate(model_dir, 0.1, seed=3, seed_audio=str(Path(model_dir) / "primer.wav")))  # fmt: skip
    out = tmp_path / "with-seed.wav"
    assert cli.main(["generate", model_dir, str(out), "--seconds", "0.5", "--include-seed", "--no-progress"]) == 0
    with wave.open(str(out)) as clip:
        assert clip.getnframes() == TINY.receptive_field + SAMPLE_RATE // 2
    assert f"the continuation starts at {TINY.receptive_field / SAMPLE_RATE:.3f} s" in capsys.readouterr().err
    assert (
        cli.main(["generate", model_dir, str(out), "--seconds", "1", "--from-silence", "--seed-audio", str(out)]) == 2
    )
    assert "exclude each other" in capsys.readouterr().err


def test_written_clips_are_peak_limited_so_mp3_never_clips(tmp_path):
    from waveforms.generate import write_outputs

    full_scale = np.sign(np.random.default_rng(0).standard_normal((1, SAMPLE_RATE))).astype(np.float32)  # +-1.0
    written = write_outputs(full_scale, str(tmp_path / "loud.mp3"), SAMPLE_RATE)
    decoded = audio.decode(written[0], SAMPLE_RATE, normalize=False)
    assert np.max(np.abs(decoded)) < 0.999  # nothing at full scale after the encoder
    assert audio.limit_peak(np.array([0.1, -0.2], np.float32)).tolist() == pytest.approx([0.1, -0.2])  # never louder


def test_cli_refuses_bad_requests_with_one_clear_line(model_dir, tmp_path, capsys):
    assert cli.main(["generate", model_dir, str(tmp_path / "x.aiff"), "--seconds", "1"]) == 2
    assert "unknown extension '.aiff'" in capsys.readouterr().err
    assert cli.main(["generate", model_dir, str(tmp_path / "x.wav"), "--seconds", "1", "--genre", "bell"]) == 1
    assert "not genre-conditioned" in capsys.readouterr().err
    assert cli.main(["generate", model_dir, str(tmp_path / "x.wav"), "--seconds", "0"]) == 1
    assert "--seconds: got 0.0; it must be a number in (0, 3600]" in capsys.readouterr().err
    assert cli.main(["generate", model_dir, str(tmp_path / "x.wav"), "--seconds", "1", "--seed-audio", "nope.wav"]) == 1
    assert "nope.wav: file not found" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_genre_conditioned_training_and_generation(data_dir, tmp_path, capsys):
    model_dir = tmp_path / "conditioned"
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY.to_dict()))
    code = cli.main(["train", data_dir, str(model_dir), "--config", str(config_file), "--genre-conditioning",
                     "--steps", "2", "--batch-size", "2", "--target-length", "300", "--eval-windows", "2",
                     "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    exported = json.loads((model_dir / "config.json").read_text())
    assert exported["model"]["global_condition_classes"] == len(exported["genres"]) == 5
    bell = generate(str(model_dir), seconds=0.02, genre="bell", seed=0, temperature=1e-4)
    drum = generate(str(model_dir), seconds=0.02, genre="drum", seed=0, temperature=1e-4)
    assert bell.shape == drum.shape == (1, 320)
    assert not np.array_equal(bell, drum), "the genre must reach the model"
    with pytest.raises(ValueError, match="the model is genre-conditioned: pass --genre"):
        generate(str(model_dir), seconds=0.02)
