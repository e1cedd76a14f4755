"""The exported model folder: one config file per kind, save/read round trips, older autoencoder folders still load,
weights downloaded once from object storage, and generation from a StoredModel equal to generation from its URI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import TINY_AUTOENCODER, TINY_WAVENET, load_autoencoder, load_autoencoder_config, save_autoencoder

from waveforms import model_store, storage
from waveforms.autoencoder import build_autoencoder
from waveforms.generate import generate, load_model
from waveforms.model import build_wavenet

SAMPLE_RATE = 16000


def save_wavenet(directory) -> object:
    """A TINY WaveNet saved as `waveforms train` exports it (config.json + model.keras); -> the Keras model."""
    model = build_wavenet(TINY_WAVENET)
    export = {"model": TINY_WAVENET.to_dict(), "sample_rate": SAMPLE_RATE, "genres": [],
              "receptive_field": TINY_WAVENET.receptive_field}  # fmt: skip
    assert model_store.save(directory, "wavenet", model, export) == ["model.keras", "config.json"]
    return model


def outputs(keras_model, length: int = 64) -> np.ndarray:
    codes = np.random.default_rng(3).integers(0, 256, (1, length)).astype(np.int32)
    return np.asarray(keras_model({"audio": codes}))


def test_each_kind_saves_one_config_file_and_reads_back_the_same_network(tmp_path):
    wavenet = save_wavenet(tmp_path / "wavenet")
    autoencoder = build_autoencoder(TINY_AUTOENCODER)
    save_autoencoder(autoencoder, tmp_path / "autoencoder")
    assert sorted(os.listdir(tmp_path / "wavenet")) == ["config.json", "model.keras"]
    assert sorted(os.listdir(tmp_path / "autoencoder")) == ["autoencoder.weights.h5", "config.json"]

    stored = model_store.read(tmp_path / "wavenet")
    assert (stored.kind, stored.config, stored.sample_rate, stored.primer) == ("wavenet", TINY_WAVENET, 16000, None)
    assert stored.network() is stored.network()  # built and loaded once
    np.testing.assert_allclose(outputs(stored.network()), outputs(wavenet), atol=1e-6)
    assert model_store.read(stored) is stored  # a StoredModel passes through: no second read

    stored = model_store.read(tmp_path / "autoencoder")
    assert (stored.kind, stored.config) == ("autoencoder", TINY_AUTOENCODER)
    assert stored.sample_rate == TINY_AUTOENCODER.sample_rate
    np.testing.assert_allclose(outputs(stored.network().model), outputs(autoencoder.model), atol=1e-6)
    # generate.load_model handles every kind: the autoencoder's Keras model, not a missing model.keras
    keras_model, config = load_model(str(tmp_path / "autoencoder"))
    assert config == TINY_AUTOENCODER
    np.testing.assert_allclose(outputs(keras_model), outputs(autoencoder.model), atol=1e-6)


def test_autoencoder_folders_written_before_one_config_file_still_load(tmp_path):
    autoencoder = build_autoencoder(TINY_AUTOENCODER)
    save_autoencoder(autoencoder, tmp_path / "m")
    legacy = {"model": "autoencoder", "config": TINY_AUTOENCODER.to_dict()}
    # as `waveforms train` wrote it: config.json (with the data profile) and autoencoder.json side by side
    both = tmp_path / "both"
    both.mkdir()
    os.replace(tmp_path / "m" / "autoencoder.weights.h5", both / "autoencoder.weights.h5")
    export = {**json.loads((tmp_path / "m" / "config.json").read_text()), "data_profile": {"rms_dbfs": [-30.0]}}
    (both / "config.json").write_text(json.dumps(export))
    (both / "autoencoder.json").write_text(json.dumps(legacy))
    stored = model_store.read(both)
    assert stored.config == TINY_AUTOENCODER and stored.export["data_profile"] == {"rms_dbfs": [-30.0]}
    np.testing.assert_allclose(outputs(load_autoencoder(both).model), outputs(autoencoder.model), atol=1e-6)
    # as save_autoencoder wrote it: autoencoder.json only
    (both / "config.json").unlink()
    assert load_autoencoder_config(both) == TINY_AUTOENCODER
    assert model_store.read(both).sample_rate == TINY_AUTOENCODER.sample_rate
    np.testing.assert_allclose(outputs(load_autoencoder(both).model), outputs(autoencoder.model), atol=1e-6)
    (both / "autoencoder.json").write_text(json.dumps({"model": "wavenet"}))
    with pytest.raises(ValueError, match="autoencoder.json does not describe an autoencoder"):
        model_store.read(both)


def test_clear_errors_for_folders_that_hold_no_usable_model(tmp_path):
    with pytest.raises(ValueError, match="no config.json; is it the MODEL_URI of a finished `waveforms train` run"):
        model_store.read(tmp_path / "nothing")
    save_wavenet(tmp_path / "wavenet")
    with pytest.raises(ValueError, match="holds a 'wavenet' model, not 'autoencoder'"):
        load_autoencoder(tmp_path / "wavenet")
    os.remove(tmp_path / "wavenet" / "model.keras")
    stored = model_store.read(tmp_path / "wavenet")  # the configuration alone reads
    with pytest.raises(ValueError, match="model.keras is missing"):
        stored.network()
    config = json.loads((tmp_path / "wavenet" / "config.json").read_text())
    (tmp_path / "wavenet" / "config.json").write_text(json.dumps({**config, "model_kind": "transformer"}))
    with pytest.raises(ValueError, match="unknown model kind 'transformer'"):
        model_store.read(tmp_path / "wavenet")
    (tmp_path / "wavenet" / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        model_store.read(tmp_path / "wavenet")


def test_a_model_in_object_storage_is_downloaded_once(tmp_path, s3_env, s3_prefix, monkeypatch):
    wavenet = save_wavenet(tmp_path / "wavenet")
    storage.sync_dir_up(str(tmp_path / "wavenet"), s3_prefix)
    downloads = []
    download_file = storage.download_file
    monkeypatch.setattr(storage, "download_file", lambda uri, path: downloads.append(uri) or download_file(uri, path))
    stored = model_store.read(s3_prefix)
    assert stored.kind == "wavenet" and not downloads  # the configuration is read without downloading the weights
    first = outputs(stored.network())
    outputs(stored.network())
    assert downloads == [f"{s3_prefix}/model.keras"]
    np.testing.assert_allclose(first, outputs(wavenet), atol=1e-6)


def test_generation_from_a_stored_model_equals_generation_from_its_uri(tmp_path):
    save_wavenet(tmp_path / "wavenet")
    stored = model_store.read(tmp_path / "wavenet")
    from_uri = generate(str(tmp_path / "wavenet"), 0.005, batch=2, seed=4, seed_audio="")
    from_stored = generate(stored, 0.005, batch=2, seed=4, seed_audio="")
    assert from_uri.shape == (2, 80)
    np.testing.assert_array_equal(from_uri, from_stored)
