"""WaveNet model contract: configuration, receptive field, causality, conditioning, layer names, save/load."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from helpers import TINY_WAVENET

from waveforms.model import NAMED_CONFIGS, WaveNetConfig, build_wavenet, layer_names, load_config

TINY = dataclasses.replace(TINY_WAVENET, kernel_size=3)  # kernel 3: the receptive field is not a power of two


def test_receptive_field_is_derived_from_the_config():
    assert NAMED_CONFIGS["small"].receptive_field == 2047
    assert NAMED_CONFIGS["ibab"].receptive_field == 5 * 1023 + 1
    assert TINY.dilations == (1, 2, 4, 8)
    assert TINY.receptive_field == 2 * 15 + 1


def test_output_is_causal_and_sees_exactly_the_receptive_field():
    model = build_wavenet(TINY)
    rf, length = TINY.receptive_field, 80
    codes = np.random.RandomState(0).randint(0, 256, (1, length)).astype(np.int32)
    base = model({"audio": codes}).numpy()
    assert base.shape == (1, length, 256) and base.dtype == np.float32

    t = 60
    future = codes.copy()
    future[0, t + 1 :] = (future[0, t + 1 :] + 7) % 256  # change everything after t
    changed = model({"audio": future}).numpy()
    np.testing.assert_array_equal(changed[0, : t + 1], base[0, : t + 1])
    assert np.abs(changed[0, t + 1 :] - base[0, t + 1 :]).max() > 1e-3

    oldest_seen = codes.copy()
    oldest_seen[0, t - rf + 1] = (oldest_seen[0, t - rf + 1] + 100) % 256
    assert np.abs(model({"audio": oldest_seen}).numpy()[0, t] - base[0, t]).max() > 1e-6
    too_old = codes.copy()
    too_old[0, t - rf] = (too_old[0, t - rf] + 100) % 256
    np.testing.assert_array_equal(model({"audio": too_old}).numpy()[0, t], base[0, t])


def test_layer_names_are_the_contract():
    small = NAMED_CONFIGS["small"]
    names = [layer.name for layer in build_wavenet(small).layers if layer.weights]
    assert sorted(names) == sorted(layer_names(small))
    assert layer_names(small)[:3] == ["input_embedding", "block_00_dilated_conv", "block_00_residual"]
    assert layer_names(small)[-4:] == ["block_19_dilated_conv", "skip_projection", "output_hidden", "output_logits"]
    conditioned = WaveNetConfig(global_condition_classes=3, local_condition_channels=4)
    assert {"global_embedding", "global_condition_projection", "local_condition_projection"} <= set(
        layer_names(conditioned)
    )
    model = build_wavenet(conditioned)
    assert sorted(layer.name for layer in model.layers if layer.weights) == sorted(layer_names(conditioned))
    assert model.get_layer("block_03_dilated_conv").kernel.shape == (2, 32, 64)


def test_global_condition_changes_the_output():
    config = WaveNetConfig(**{**TINY.to_dict(), "global_condition_classes": 4})
    model = build_wavenet(config)
    codes = np.random.RandomState(1).randint(0, 256, (2, 40)).astype(np.int32)
    a = model({"audio": codes, "global_condition": np.array([0, 0], np.int32)}).numpy()
    b = model({"audio": codes, "global_condition": np.array([0, 3], np.int32)}).numpy()
    np.testing.assert_array_equal(a[0], b[0])
    assert np.abs(a[1] - b[1]).max() > 1e-4


def test_local_condition_changes_the_output_only_from_its_time_on():
    config = WaveNetConfig(**{**TINY.to_dict(), "local_condition_channels": 3})
    model = build_wavenet(config)
    rs = np.random.RandomState(2)
    codes = rs.randint(0, 256, (1, 40)).astype(np.int32)
    local = rs.randn(1, 40, 3).astype(np.float32)
    a = model({"audio": codes, "local_condition": local}).numpy()
    local[0, 25] += 1.0
    b = model({"audio": codes, "local_condition": local}).numpy()
    np.testing.assert_array_equal(a[0, :25], b[0, :25])
    assert np.abs(a[0, 25] - b[0, 25]).max() > 1e-4


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="kernel_size"):
        WaveNetConfig(kernel_size=1).validate()
    with pytest.raises(ValueError, match="stacks"):
        WaveNetConfig(stacks=0).validate()
    with pytest.raises(ValueError, match="residual_channels"):
        WaveNetConfig(residual_channels=2.5).validate()
    with pytest.raises(ValueError, match="unknown WaveNetConfig field.*'layers'"):
        WaveNetConfig.from_dict({"layers": 3})
    with pytest.raises(ValueError, match="skip_channels must be an integer"):
        WaveNetConfig.from_dict({"skip_channels": "128"})
    with pytest.raises(ValueError, match="stacks must be an integer"):
        WaveNetConfig.from_dict({"stacks": True})
    with pytest.raises(ValueError, match="skip_channels"):
        build_wavenet(WaveNetConfig(skip_channels=0))
    config = NAMED_CONFIGS["ibab"]
    assert WaveNetConfig.from_dict(config.to_dict()) == config


def test_load_config_by_name_json_yaml_and_overrides(tmp_path):
    assert load_config("small") == NAMED_CONFIGS["small"]
    assert load_config("small", skip_channels=64).skip_channels == 64
    (tmp_path / "mine.json").write_text(json.dumps({"stacks": 3, "skip_channels": 256}))
    from_json = load_config(str(tmp_path / "mine.json"))
    assert (from_json.stacks, from_json.skip_channels, from_json.layers_per_stack) == (3, 256, 10)
    (tmp_path / "mine.yaml").write_text("stacks: 1\nlayers_per_stack: 5\nglobal_condition_classes: 8\n")
    from_yaml = load_config(str(tmp_path / "mine.yaml"), kernel_size=3)
    assert (from_yaml.receptive_field, from_yaml.global_condition_classes) == (2 * 31 + 1, 8)

    with pytest.raises(ValueError, match="not a named configuration"):
        load_config("huge")
    with pytest.raises(ValueError, match="file not found"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "bad.yaml").write_text("stacks: [1\n")
    with pytest.raises(ValueError, match="bad.yaml.*cannot parse"):
        load_config(str(tmp_path / "bad.yaml"))
    (tmp_path / "typo.json").write_text(json.dumps({"stack": 3}))
    with pytest.raises(ValueError, match="typo.json.*unknown WaveNetConfig field"):
        load_config(str(tmp_path / "typo.json"))
    with pytest.raises(ValueError, match="stacks must be >= 1"):
        load_config("small", stacks=0)
    with pytest.raises(ValueError, match="unknown WaveNetConfig field"):
        load_config("small", dilation=2)


def test_saved_model_reloads_with_the_same_outputs(tmp_path):
    model = build_wavenet(TINY)
    codes = np.random.RandomState(3).randint(0, 256, (1, 30)).astype(np.int32)
    path = tmp_path / "wavenet.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded({"audio": codes}).numpy(), model({"audio": codes}).numpy(), atol=1e-6)


def test_input_embedding_starts_smooth_in_amplitude_and_follows_the_global_seed():
    keras.utils.set_random_seed(5)
    table = build_wavenet(TINY).get_layer("input_embedding").embeddings.numpy()  # (256, R)
    neighbours = np.linalg.norm(np.diff(table, axis=0), axis=1).mean()
    far_apart = np.linalg.norm(table[:128] - table[128:], axis=1).mean()
    assert neighbours < 0.05 * far_apart  # codes c and c + 1 start close; distant amplitudes do not
    assert 0.3 < table.std() < 3.0
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(build_wavenet(TINY).get_layer("input_embedding").embeddings.numpy(), table)
    keras.utils.set_random_seed(6)
    assert not np.allclose(build_wavenet(TINY).get_layer("input_embedding").embeddings.numpy(), table)


def test_flops_per_sample_match_a_hand_count_and_the_models_own_kernels():
    from waveforms.model import flops_per_sample

    # small (L=20, K=2, R=D=32, S=128, Q=256), multiply-adds per position counted by hand:
    #   dilated convs 20 * 2*32*64 = 81,920; residual 19 * 32*32 = 19,456; skip 20*32 * 128 = 81,920;
    #   hidden 128*128 = 16,384; logits 128*256 = 32,768  -> 232,448 MACs = 464,896 FLOPs; training x3
    assert flops_per_sample(NAMED_CONFIGS["small"], training=False) == 464_896
    assert flops_per_sample(NAMED_CONFIGS["small"]) == 1_394_688
    # ibab (L=50, S=512): 50*4,096 + 49*1,024 + 50*32*512 + 512*512 + 512*256 = 1,467,392 MACs
    assert flops_per_sample(NAMED_CONFIGS["ibab"], training=False) == 2 * 1_467_392
    # independently: every kernel that runs once per time position is one multiply-add per weight
    for config in (NAMED_CONFIGS["small"], WaveNetConfig(1, 3, 3, 8, 12, 16, local_condition_channels=5)):
        model = build_wavenet(config)
        per_position = [layer for layer in model.layers if layer.name not in ("input_embedding", "global_embedding",
                                                                              "global_condition_projection")]  # fmt: skip
        kernels = sum(int(np.prod(w.shape)) for layer in per_position for w in layer.weights if len(w.shape) > 1)
        assert flops_per_sample(config, training=False) == 2 * kernels
