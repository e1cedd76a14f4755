"""The NSynth-style autoencoder: shapes, (non-)causality, the shared fast generator, saving, and interpolation quality."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
from helpers import TINY_AUTOENCODER as TINY
from helpers import load_autoencoder, load_autoencoder_config, save_autoencoder

from waveforms import model_store
from waveforms.autoencoder import (
    ENVELOPE_SCALE_DB,
    AutoencoderConfig,
    build_autoencoder,
    upsample_embedding,
)
from waveforms.model import WaveNetConfig, layer_names
from waveforms.soundspace_quality import spearman


def test_config_round_trip_and_clear_errors():
    config = AutoencoderConfig()
    assert config.hop_length == 512 and config.embedding_channels == 16  # NSynth's defaults
    # z, pitch and periodicity, 24 envelope bands, 8 harmonics
    assert config.decoder_config.local_condition_channels == 16 + 2 + 24 + 2 * 8
    assert AutoencoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert (
        AutoencoderConfig.from_dict({"hop_length": 256, "decoder": {"layers_per_stack": 6}}).decoder.layers_per_stack
        == 6
    )
    with pytest.raises(ValueError, match=r"unknown AutoencoderConfig field\(s\) \['hop'\]"):
        AutoencoderConfig.from_dict({"hop": 256})
    with pytest.raises(ValueError, match="hop_length must be >= 1"):
        AutoencoderConfig.from_dict({"hop_length": 0})
    with pytest.raises(ValueError, match="encoder_kernel_size must be odd"):
        AutoencoderConfig.from_dict({"encoder_kernel_size": 4})
    with pytest.raises(ValueError, match="unknown WaveNetConfig field"):
        AutoencoderConfig.from_dict({"decoder": {"depth": 3}})
    assert config.frames(16000) == 32 and config.frames(512) == 1 and config.frames(513) == 2


def test_shapes_any_length_and_the_decoder_is_a_plain_wavenet():
    ae = build_autoencoder(TINY)
    for length in (256, 300):  # a partial last frame is fine
        codes = np.random.default_rng(0).integers(0, 256, (2, length)).astype(np.int32)
        assert tuple(ae.model({"audio": codes}).shape) == (2, length, 256)
        assert tuple(ae.encoder({"audio": codes}).shape) == (2, -(-length // 64), 4)
    weighted = [layer.name for layer in ae.decoder.layers if layer.weights]
    assert sorted(weighted) == sorted(layer_names(TINY.decoder_config))
    assert ae.decoder.input["local_condition"].shape[-1] == TINY.embedding_channels
    np.testing.assert_array_equal(upsample_embedding(np.arange(6.0).reshape(1, 3, 2), 2, 5)[0, :, 0], [0, 0, 2, 2, 4])


def test_encoder_sees_the_future_and_the_decoder_does_not():
    ae = build_autoencoder(TINY)
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (1, 256)).astype(np.int32)
    changed = codes.copy()
    changed[0, 100] = (changed[0, 100] + 128) % 256
    # the frame that ends before sample 100 still changes: its encoder looks ahead (non-causal, kernel 3)
    before = np.asarray(ae.encoder({"audio": codes}))
    after = np.asarray(ae.encoder({"audio": changed}))
    assert np.abs(before[0, 1] - after[0, 1]).max() > 1e-6  # frame 1 covers samples 64..127
    # decoder: with the condition held fixed, logits before the change are untouched
    condition = upsample_embedding(before, 64, 256)
    a = np.asarray(ae.decoder({"audio": codes, "local_condition": condition}))
    b = np.asarray(ae.decoder({"audio": changed, "local_condition": condition}))
    np.testing.assert_array_equal(a[0, :100], b[0, :100])
    assert np.abs(a[0, 100:] - b[0, 100:]).max() > 1e-6


def test_fast_generator_reproduces_the_training_model_with_the_upsampled_embedding():
    from waveforms.fastgen import FastGenerator

    ae = build_autoencoder(TINY)
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (3, 400)).astype(np.int32)
    full = np.asarray(ae.model({"audio": codes}))  # (3, 400, 256): encoder + decoder, teacher-forced
    embedding = np.asarray(ae.encoder({"audio": codes}))
    condition = upsample_embedding(embedding, TINY.hop_length, 400)
    fast = FastGenerator(ae.decoder, TINY.decoder_config, batch_size=3).step_logits(codes, local_condition=condition)
    assert np.abs(fast - full).max() <= 1e-4


def test_decode_batches_and_chunks_give_one_row_per_embedding():
    ae = build_autoencoder(TINY)
    embeddings = np.random.default_rng(3).normal(size=(5, 4, 4)).astype(np.float32)
    codes = ae.decode(embeddings, 200, seed=1)
    assert codes.shape == (5, 200) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 256
    chunked = ae.decode(embeddings, 200, seed=1, max_batch=2)  # 3 passes of a batch-2 generator
    assert chunked.shape == (5, 200)
    with pytest.raises(ValueError, match="fewer than 300 samples"):
        ae.decode(embeddings, 300)


def test_save_and_load_round_trip(tmp_path):
    ae = build_autoencoder(TINY)
    codes = np.random.default_rng(4).integers(0, 256, (1, 128)).astype(np.int32)
    save_autoencoder(ae, tmp_path / "m")
    assert load_autoencoder_config(tmp_path / "m") == TINY
    loaded = load_autoencoder(tmp_path / "m")
    np.testing.assert_allclose(
        np.asarray(loaded.model({"audio": codes})), np.asarray(ae.model({"audio": codes})), atol=1e-6
    )
    with pytest.raises(ValueError, match="no config.json"):
        load_autoencoder_config(tmp_path / "nothing")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "model_kind": "wavenet"}))
    with pytest.raises(ValueError, match="config.json: unknown WaveNetConfig field"):  # read as what it claims to be
        load_autoencoder_config(tmp_path / "m")


# ---------------------------------------------------------------- quality: interpolation moves timbre monotonically

# Spectral centroid of the first second at MIDI 60: organ 650 Hz, bell at velocity 50 372 Hz. Both are free of noise
# (the reed's breath noise decodes as broadband noise and brightens its end of the path), and MIDI 60's period
# (61 samples) is longer than this decoder's receptive field (32: the previous default decoder, pinned here), so the
# decoder has to take timbre from the embedding. The encode -> interpolate -> decode machinery is what this checks;
# the default decoder (512 samples) and the bars are measured by benchmarks/soundspace_quality.py.
SHORT_CONTEXT = AutoencoderConfig(decoder=WaveNetConfig(stacks=1, layers_per_stack=5, kernel_size=2, residual_channels=32,
                                                        dilation_channels=32, skip_channels=64),
                                  pitch_harmonics=0, envelope_bands=0)  # timbre from z alone: both at MIDI 60  # fmt: skip
BRIGHT, DULL = ("organ", 100), ("bell", 50)
TRAIN_STEPS, TRAIN_BATCH, TRAIN_WINDOW = 300, 8, 2048
PATH_RESOLUTION, REPLICAS, SECONDS, TEMPERATURE = 9, 6, 1.0, 0.9  # 9 points: x = 0, 1/8, ..., 1


def train_briefly(ae, clips: np.ndarray, steps: int, seed: int = 0) -> float:
    """A minimal teacher-forced training loop on random windows (train.py's job at scale); returns seconds taken."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(2e-3, global_clipnorm=5.0)  # the clip only catches rare gradient spikes
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=True)
    def step(codes):
        with tf.GradientTape() as tape:
            logits = ae.model({"audio": codes}, training=True)  # (B, T, Q)
            loss = loss_fn(codes[:, 1:], logits[:, :-1])  # logits[:, t] predicts codes[:, t + 1]
        gradients = tape.gradient(loss, ae.model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, ae.model.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(steps):
        rows = rng.integers(0, len(clips), TRAIN_BATCH)
        offsets = rng.integers(0, clips.shape[1] - TRAIN_WINDOW, TRAIN_BATCH)
        loss = step(np.stack([clips[r, o : o + TRAIN_WINDOW] for r, o in zip(rows, offsets, strict=True)]))
    print(
        f"trained {steps} steps of {TRAIN_BATCH}x{TRAIN_WINDOW} in {time.perf_counter() - start:.0f} s, last loss {float(loss):.2f}"
    )
    return time.perf_counter() - start


@pytest.mark.slow
def test_interpolating_two_timbres_moves_the_spectral_centroid_monotonically():
    import keras

    from waveforms.audio import mu_law_decode, mu_law_encode
    from waveforms.soundspace import grid_points, interpolate, postprocess
    from waveforms.spectral import spectral_centroid
    from waveforms.synth import Note, render_note

    keras.utils.set_random_seed(0)
    ae = build_autoencoder(SHORT_CONTEXT)
    # training notes: both families around middle C at three velocities (note seeds differ from the corner notes)
    notes = [
        Note(family, pitch, velocity, pitch)
        for family in (BRIGHT[0], DULL[0])
        for pitch in (57, 60, 63)
        for velocity in (50, 75, 100)
    ]
    clips = np.stack([mu_law_encode(render_note(note, seconds=2.0)) for note in notes]).astype(np.int32)
    train_briefly(ae, clips, TRAIN_STEPS)

    sr = ae.config.sample_rate
    bright = render_note(Note(BRIGHT[0], 60, BRIGHT[1], 999), sr, seconds=SECONDS)  # held-out notes as the corners
    dull = render_note(Note(DULL[0], 60, DULL[1], 999), sr, seconds=SECONDS)
    corners = ae.encode(np.stack([bright, dull]))  # (2, F, E)
    points = grid_points(2, PATH_RESOLUTION)
    path = interpolate(corners, np.array([p.weights for p in points], np.float32))  # (R, F, E)
    # each point decoded REPLICAS times (different sampling noise) in the same single batch: R·REPLICAS rows
    codes = ae.decode(np.repeat(path, REPLICAS, axis=0), int(SECONDS * sr), temperature=TEMPERATURE, seed=1)
    centroids = np.array([spectral_centroid(postprocess(mu_law_decode(row), sr, len(row)), sr) for row in codes])
    centroids = centroids.reshape(len(points), REPLICAS).mean(axis=1)  # (R,)
    positions = [p.x for p in points]
    rho = spearman(positions, centroids)
    print(
        f"source centroids {BRIGHT}: {spectral_centroid(bright, sr):.0f} Hz, {DULL}: {spectral_centroid(dull, sr):.0f} Hz"
    )
    print("decoded centroids along W->E:", " ".join(f"{c:.0f}" for c in centroids), f"Spearman rho {rho:.3f}")
    assert centroids[0] > centroids[-1]  # the bright corner decodes brighter than the dull one
    assert rho <= -0.9  # and the centroid falls monotonically from the bright to the dull corner


def test_training_task_matches_train_py_interface(tmp_path):
    from waveforms.autoencoder import AutoencoderTask
    from waveforms.tasks import next_sample_nll

    task = AutoencoderTask(TINY)
    assert task.receptive_field == 16 and not task.conditioned
    assert task.window_length(100) % TINY.hop_length == 0 and task.window_length(100) >= 115
    assert AutoencoderTask.load_config("default", hop_length=256).hop_length == 256
    (tmp_path / "ae.json").write_text(json.dumps({"embedding_channels": 8}))
    assert AutoencoderTask.load_config(str(tmp_path / "ae.json")).embedding_channels == 8
    with pytest.raises(ValueError, match="not a named configuration"):
        AutoencoderTask.load_config("small")
    model = task.build_model()
    codes = np.random.default_rng(5).integers(0, 256, (2, 192)).astype(np.int32)
    loss = next_sample_nll(model, task.model_inputs(codes), codes, 64, training=False, network=task.network)
    assert tuple(loss.shape) == (2,) and float(loss[0]) == pytest.approx(np.log(256), rel=0.1)  # untrained ~ uniform
    export = {"model": task.config.to_dict(), "sample_rate": task.config.sample_rate}
    assert model_store.save(tmp_path / "export", task.kind, model, export) == ["autoencoder.weights.h5", "config.json"]
    loaded = load_autoencoder(tmp_path / "export")
    np.testing.assert_allclose(
        np.asarray(loaded.model({"audio": codes})), np.asarray(model({"audio": codes})), atol=1e-6
    )


def test_the_default_decoder_hears_a_whole_period_of_the_lowest_synth_notes():
    import inspect

    from waveforms.synth import Note, plan_notes

    lowest_pitch = min(inspect.signature(plan_notes).parameters["pitches"].default)  # the embedded dataset's range
    period = AutoencoderConfig().sample_rate / Note("organ", lowest_pitch, 100, 0).frequency  # 245 samples at MIDI 36
    assert AutoencoderConfig().decoder_config.receptive_field >= 2 * period  # the drums sound an octave below the note


def test_decoder_input_noise_is_validated_defaults_for_old_configs_and_only_acts_in_training():
    old = AutoencoderConfig().to_dict()
    del old["decoder_input_noise"]  # a config saved before the field existed
    assert AutoencoderConfig.from_dict(old).decoder_input_noise == 0.0
    for bad in (-1.0, 256, "4", True):
        with pytest.raises(ValueError, match="decoder_input_noise must be a number"):
            AutoencoderConfig.from_dict({"decoder_input_noise": bad})
    noisy = dataclasses.replace(TINY, decoder_input_noise=3.0)
    ae = build_autoencoder(noisy)
    layer = ae.model.get_layer("decoder_input_noise")
    codes = np.random.default_rng(6).integers(20, 236, (4, 4096)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(layer(codes, training=False)), codes)
    shifted = np.asarray(layer(codes, training=True)) - codes
    assert abs(shifted.mean()) < 0.1 and 2.8 < shifted.std() < 3.2  # rounded N(0, 3): std sqrt(9 + 1/12)
    assert not np.array_equal(np.asarray(layer(codes, training=True)) - codes, shifted)  # fresh noise every call
    edge = np.asarray(layer(np.full((1, 1000), 255, np.int32), training=True))
    assert edge.max() == 255 and edge.min() >= 0
    # the evaluation (training=False) sees clean codes: the same logits as the noiseless model with the same weights
    clean = build_autoencoder(TINY)
    clean.model.set_weights(ae.model.get_weights())
    np.testing.assert_allclose(np.asarray(ae.model({"audio": codes[:, :256]})),
                               np.asarray(clean.model({"audio": codes[:, :256]})), atol=1e-6)  # fmt: skip


def test_decoder_segments_cut_the_context_in_training_only():
    from waveforms.autoencoder import AutoencoderTask

    with pytest.raises(ValueError, match="decoder_segment must be 0 or a multiple of hop_length"):
        AutoencoderConfig.from_dict({"decoder_segment": 700})
    segmented = dataclasses.replace(TINY, decoder_segment=128)  # 2 embedding frames of 64
    assert AutoencoderTask(segmented).window_length(100) % 128 == 0
    ae, whole = build_autoencoder(segmented), build_autoencoder(TINY)
    whole.model.set_weights(ae.model.get_weights())
    codes = np.random.default_rng(7).integers(0, 256, (2, 384)).astype(np.int32)
    training = np.asarray(ae.model({"audio": codes}, training=True))  # (2, 384, 256)
    uncut = np.asarray(whole.model({"audio": codes}, training=True))
    np.testing.assert_allclose(training[:, :128], uncut[:, :128], atol=1e-5)  # the first segment has its whole past
    for start in (128, 256):  # each later segment starts from the empty state: its first positions lose their past
        assert np.abs(training[:, start : start + 15] - uncut[:, start : start + 15]).max() > 1e-4
        np.testing.assert_allclose(training[:, start + 15 : start + 128], uncut[:, start + 15 : start + 128], atol=1e-5)
    # evaluation and decoding hear the whole past: the same as the unsegmented model
    np.testing.assert_allclose(np.asarray(ae.model({"audio": codes})), np.asarray(whole.model({"audio": codes})),
                               atol=1e-6)  # fmt: skip


def test_the_cli_trains_the_autoencoder_at_its_own_learning_rate_unless_told():
    from waveforms.cli import build_parser
    from waveforms.cli.train import _fill_kind_defaults
    from waveforms.tasks import DEFAULT_TRAIN_SETTINGS
    from waveforms.train import TrainConfig

    def learning_rate(*flags):
        args = build_parser(["train"]).parse_args(["train", "data", "model", *flags])
        _fill_kind_defaults(args)
        return args.learning_rate

    assert DEFAULT_TRAIN_SETTINGS["autoencoder"]["learning_rate"] != TrainConfig.learning_rate
    assert learning_rate("--model", "autoencoder") == DEFAULT_TRAIN_SETTINGS["autoencoder"]["learning_rate"]
    assert learning_rate() == learning_rate("--model", "wavenet") == TrainConfig.learning_rate
    assert learning_rate("--model", "autoencoder", "--learning-rate", "0.002") == 0.002  # an explicit flag wins


def test_the_spectral_encoder_gives_one_frame_per_hop_centred_on_it_and_saves():
    from waveforms.audio import SILENCE_CODE

    config = dataclasses.replace(TINY, encoder="spectral", spectral_window=256, normalize_embedding=True)
    ae = build_autoencoder(config)
    for length in (64, 65, 640):
        codes = np.random.default_rng(8).integers(0, 256, (2, length)).astype(np.int32)
        embedding = np.asarray(ae.encoder({"audio": codes}))
        assert embedding.shape == (2, -(-length // 64), 4)
        raw = np.asarray(ae.encoder.get_layer("encoder")({"audio": codes}))  # before the normalisation
        np.testing.assert_allclose(embedding, raw / np.sqrt((raw**2).mean(-1, keepdims=True) + 1e-6), rtol=1e-4,
                                   atol=1e-6)  # fmt: skip
        rms = np.sqrt((embedding**2).mean(-1))
        assert np.all(rms <= 1 + 1e-5)  # unit RMS per frame, less only where the raw frame is near the 1e-6 floor
        np.testing.assert_allclose(rms[np.sqrt((raw**2).mean(-1)) > 0.05], 1.0, rtol=1e-3)
    spectrum = ae.encoder.get_layer("encoder").get_layer("encoder_spectrum")
    for start in (0, 200, 500):  # a click shows most in the frame whose hop holds it
        clicked = np.full((1, 640), SILENCE_CODE, np.int32)
        clicked[0, start : start + 20] = 250
        assert int(np.argmax(np.asarray(spectrum(clicked)).sum(-1)[0])) == (start + 10) // 64
    with pytest.raises(ValueError, match="encoder must be one of waveform, spectral"):
        AutoencoderConfig.from_dict({"encoder": "mel"})
    with pytest.raises(ValueError, match="spectral_window must be a power of 2"):
        AutoencoderConfig.from_dict({"spectral_window": 1000})


# ---------------------------------------------------------------- pitch conditioning (pitch_harmonics > 0)

PITCHED = dataclasses.replace(TINY, pitch_harmonics=8)


def _track(config, audio: np.ndarray) -> np.ndarray:
    from waveforms.audio import mu_law_encode
    from waveforms.autoencoder import _pitch_track_layer

    return np.asarray(_pitch_track_layer(config)(mu_law_encode(audio).astype(np.int32)[None]))[0]  # (F, 3)


@pytest.mark.parametrize("frequency", [65.4, 261.6, 1046.5])
def test_the_pitch_tracker_measures_f0_periodicity_and_the_phase_at_each_frame_centre(frequency):
    sr, hop, start_phase = 16000, PITCHED.hop_length, 0.7
    t = np.arange(sr) / sr
    track = _track(PITCHED, 0.5 * np.cos(2 * np.pi * frequency * t + start_phase).astype(np.float32))
    inner = slice(16, -16)  # frames whose 1024-sample window lies wholly inside the clip
    np.testing.assert_allclose(440 * 2 ** track[inner, 0], frequency, rtol=1e-3)
    assert np.all(track[inner, 1] > 0.9)
    centres = np.arange(len(track)) * hop + hop // 2
    expected = 2 * np.pi * frequency * centres / sr + start_phase
    error = np.angle(np.exp(1j * (track[:, 2] - expected)))[inner]
    assert np.abs(error).max() < 0.05  # radians


def test_the_pitch_tracker_follows_synth_notes_and_finds_no_pitch_in_silence_or_noise():
    from waveforms.synth import Note, render_note

    for family in ("string", "organ", "reed"):
        for pitch in (36, 60, 84):
            note = Note(family, pitch, 100, 5)
            track = _track(PITCHED, render_note(note, 16000, 1.0))
            f0 = 440 * 2 ** track[4:24, 0]  # sustained frames
            assert np.median(np.abs(f0 / note.frequency - 1)) < 0.005, (family, pitch)
    assert np.all(_track(PITCHED, np.zeros(8000, np.float32))[:, 1] < 0.05)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    assert np.median(_track(PITCHED, noise)[:, 1]) < 0.5


def test_decoding_integrates_the_same_phase_that_training_measures():
    """The decoder is trained on the phase measured in its window and decodes from the phase integrated from the
    embedding's pitch channel: for a steady tone the two differ by a constant, for every harmonic below Nyquist."""
    from waveforms.audio import mu_law_encode
    from waveforms.autoencoder import decoding_condition

    ae = build_autoencoder(PITCHED)
    E, K = PITCHED.embedding_width, PITCHED.pitch_harmonics
    assert PITCHED.decoder_config.local_condition_channels == E + 2 * K == PITCHED.embedding_channels + 2 + 2 * K
    t = np.arange(16000) / 16000
    for frequency in (220.0, 1046.5):
        codes = mu_law_encode(0.5 * np.sin(2 * np.pi * frequency * t).astype(np.float32)).astype(np.int32)[None]
        trained = np.asarray(ae.conditioner({"audio": codes}))[0]  # (T, C)
        decoded = decoding_condition(np.asarray(ae.encoder({"audio": codes})), PITCHED, 16000)[0]
        assert trained.shape == decoded.shape == (16000, E + 2 * K)
        np.testing.assert_allclose(trained[:, :E], decoded[:, :E], atol=1e-6)  # the embedding itself, repeated
        inner = slice(1024, -1024)
        for k in range(K):
            sin_trained, cos_trained = trained[inner, E + k], trained[inner, E + K + k]
            sin_decoded, cos_decoded = decoded[inner, E + k], decoded[inner, E + K + k]
            if (k + 1) * frequency >= 8000:  # at or above Nyquist: silent in both
                assert np.abs(trained[:, E + k]).max() == 0 and np.abs(decoded[:, E + k]).max() == 0
                continue
            offset = np.angle(
                np.exp(1j * (np.arctan2(sin_trained, cos_trained) - np.arctan2(sin_decoded, cos_decoded)))
            )
            assert np.angle(np.exp(1j * (offset - offset[0]))).std() < 0.03 * (k + 1), (frequency, k)


def test_a_pitched_autoencoder_decodes_with_the_fast_generator_and_saves(tmp_path):
    from waveforms.autoencoder import decoding_condition
    from waveforms.fastgen import FastGenerator

    ae = build_autoencoder(PITCHED)
    codes = np.random.default_rng(9).integers(0, 256, (2, 300)).astype(np.int32)
    full = np.asarray(ae.model({"audio": codes}))
    condition = np.asarray(ae.conditioner({"audio": codes}))
    fast = FastGenerator(ae.decoder, PITCHED.decoder_config, batch_size=2).step_logits(codes, local_condition=condition)
    assert np.abs(fast - full).max() <= 1e-4  # cached generation equals the training model on the same condition
    embeddings = np.asarray(ae.encoder({"audio": codes}))
    assert embeddings.shape == (2, 5, PITCHED.embedding_width)
    decoded = ae.decode(embeddings, 300, seed=1)
    assert decoded.shape == (2, 300) and decoded.min() >= 0 and decoded.max() < 256
    assert decoding_condition(embeddings, PITCHED, 300).shape == (
        2,
        300,
        PITCHED.decoder_config.local_condition_channels,
    )
    save_autoencoder(ae, tmp_path / "m")
    assert load_autoencoder_config(tmp_path / "m") == PITCHED
    np.testing.assert_allclose(np.asarray(load_autoencoder(tmp_path / "m").model({"audio": codes})), full, atol=1e-6)
    with pytest.raises(ValueError, match="pitch_harmonics must be >= 0"):
        AutoencoderConfig.from_dict({"pitch_harmonics": -1})
    saved_before = AutoencoderConfig().to_dict()
    del saved_before["pitch_harmonics"]  # a model saved before pitch tracking existed loads as what it was
    assert AutoencoderConfig.from_stored(saved_before).pitch_harmonics == 0
    assert AutoencoderConfig.from_dict(saved_before).pitch_harmonics == AutoencoderConfig().pitch_harmonics == 8


def _pitch_frames(f0, periodicity, frames: int) -> np.ndarray:
    """Embedding frames (1, F, 2 + E) of a pitched config: log2(f0 / 440), periodicity, then zeros for z."""
    frames_ = np.zeros((1, frames, PITCHED.embedding_width), np.float32)
    frames_[0, :, 0] = np.log2(np.broadcast_to(f0, frames) / 440.0)
    frames_[0, :, 1] = periodicity
    return frames_


def test_the_pitch_filter_keeps_the_harmonics_and_turns_the_noise_between_them_down():
    from waveforms.autoencoder import pitch_filter

    sr, length, f0 = PITCHED.sample_rate, 16000, 250.0  # 250 Hz: harmonics on exact FFT bins of a 1-s clip
    t = np.arange(length) / sr
    tone = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, 9))
    noise = 0.02 * np.random.default_rng(0).standard_normal(length)
    frames = _pitch_frames(f0, 1.0, length // PITCHED.hop_length)
    filtered = pitch_filter((tone + noise)[None], frames, PITCHED, 0.8)[0]
    settled = slice(4000, None)  # after the onset (about 1 / (1 - g) = 5 periods; a margin on top)

    def spectrum(x):
        return np.abs(np.fft.rfft(x[settled] * np.hanning(len(x[settled])))) ** 2

    bins = np.fft.rfftfreq(12000, 1 / sr)
    between = np.abs((bins / f0) - np.round(bins / f0)) > 0.3  # well away from every harmonic
    harmonics = np.isin(np.round(bins), f0 * np.arange(1, 9))
    noise_drop = 10 * np.log10(spectrum(tone + noise)[between].sum() / spectrum(filtered)[between].sum())
    harmonic_change = 10 * np.log10(spectrum(filtered)[harmonics].sum() / spectrum(tone + noise)[harmonics].sum())
    assert noise_drop > 15  # (1 - g) / (1 + g) at g = 0.8: 19 dB on the comb's troughs, less on its flanks
    assert abs(harmonic_change) < 0.5
    # off: strength 0, aperiodic frames, or a model that tracks no pitch
    np.testing.assert_allclose(pitch_filter(noise[None], frames, PITCHED, 0.0)[0], noise, atol=1e-6)
    np.testing.assert_allclose(
        pitch_filter(noise[None], _pitch_frames(f0, 0.0, 250), PITCHED, 0.8)[0], noise, atol=1e-6
    )
    np.testing.assert_allclose(pitch_filter(noise[None], frames[..., 2:], TINY, 0.8)[0], noise, atol=1e-6)
    with pytest.raises(ValueError, match="249 embedding frames cover fewer than 16000 samples"):
        pitch_filter(noise[None], frames[:, :249], PITCHED, 0.8)


def test_the_pitch_filter_follows_a_changing_pitch_exactly_as_a_sample_by_sample_comb():
    from waveforms.autoencoder import pitch_filter, pitch_hz, upsample_embedding

    rng = np.random.default_rng(1)
    audio = rng.standard_normal((2, 3000)).astype(np.float32)
    frames = np.concatenate([_pitch_frames(np.geomspace(80, 900, 47), np.linspace(0.2, 1.0, 47), 47),
                             _pitch_frames(np.geomspace(1500, 120, 47), 0.9, 47)])  # fmt: skip
    filtered = pitch_filter(audio, frames, PITCHED, 0.7)
    condition = upsample_embedding(frames, PITCHED.hop_length, 3000)
    period = PITCHED.sample_rate / np.asarray(pitch_hz(condition[..., 0]), np.float64)
    gain = 0.7 * condition[..., 1]
    expected = np.zeros((2, 3000))
    for row in range(2):
        for t in range(3000):
            source = t - period[row, t]
            whole = int(np.floor(source))
            if whole < 0:
                expected[row, t] = audio[row, t]
                continue
            earlier = (whole + 1 - source) * expected[row, whole] + (source - whole) * expected[row, whole + 1]
            expected[row, t] = (1 - gain[row, t]) * audio[row, t] + gain[row, t] * earlier
    np.testing.assert_allclose(filtered, expected, atol=1e-5)


ENVELOPED = dataclasses.replace(PITCHED, envelope_bands=12)


def test_the_embedding_carries_the_measured_envelope_the_decoder_hears_it_and_it_saves(tmp_path):
    from waveforms.audio import mu_law_encode
    from waveforms.envelope import spectral_envelope
    from waveforms.fastgen import FastGenerator

    ae = build_autoencoder(ENVELOPED)
    t = np.arange(4096) / ENVELOPED.sample_rate
    tones = np.stack([0.5 * np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    embedding = ae.encode(tones)  # (2, 64, 2 + E + 12)
    assert embedding.shape == (2, 64, ENVELOPED.embedding_width) == (2, 64, 2 + 4 + 12)
    envelope = embedding[..., -12:] * ENVELOPE_SCALE_DB  # dB
    expected = spectral_envelope(tones, ENVELOPED.sample_rate, ENVELOPED.hop_length, bands=12)
    for row in range(2):  # the loudest band is the tone's, as the float clip's envelope has it
        assert np.all(np.argmax(envelope[row, 8:-8], axis=-1) == np.argmax(expected[row, 8:-8], axis=-1))
    assert np.argmax(envelope[0, 30]) < np.argmax(envelope[1, 30])
    peak = np.argmax(expected[0, 30])
    assert abs(envelope[0, 30, peak] - expected[0, 30, peak]) < 1.0  # the same dB scale (8-bit coded vs float)
    codes = mu_law_encode(tones).astype(np.int32)
    full = np.asarray(ae.model({"audio": codes}))
    condition = np.asarray(ae.conditioner({"audio": codes}))
    assert condition.shape[-1] == ENVELOPED.decoder_config.local_condition_channels
    fast = FastGenerator(ae.decoder, ENVELOPED.decoder_config, batch_size=2).step_logits(
        codes, local_condition=condition
    )
    assert np.abs(fast - full).max() <= 1e-4  # cached generation equals the training model with the envelope too
    save_autoencoder(ae, tmp_path / "m")
    assert load_autoencoder_config(tmp_path / "m") == ENVELOPED
    np.testing.assert_allclose(np.asarray(load_autoencoder(tmp_path / "m").model({"audio": codes})), full, atol=1e-5)
    saved_before = AutoencoderConfig().to_dict()
    del saved_before["envelope_bands"]  # a model saved before the envelope existed loads as what it was
    assert AutoencoderConfig.from_stored(saved_before).envelope_bands == 0
    with pytest.raises(ValueError, match="envelope_bands must be >= 0"):
        AutoencoderConfig.from_dict({"envelope_bands": -1})
