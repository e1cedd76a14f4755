"""The fast generator equals the full model (teacher forcing against model(codes)), and samples what it says."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from helpers import TINY_WAVENET

from waveforms.fastgen import FastGenerator, gumbel_noise, uniform_from_bits
from waveforms.model import NAMED_CONFIGS, WaveNetConfig, build_wavenet

TINY = dataclasses.replace(TINY_WAVENET, stacks=2, layers_per_stack=3)  # two stacks: the dilations start over


def _randomised(config: WaveNetConfig, seed: int = 0):
    """A model whose every weight, biases included, is random, so no path of the step is tested by zeros."""
    model = build_wavenet(config)
    rs = np.random.RandomState(seed)
    for weight in model.weights:
        fan_in = int(np.prod(weight.shape[:-1])) if len(weight.shape) > 1 else 16
        weight.assign(rs.randn(*weight.shape).astype(np.float32) / np.sqrt(fan_in))
    return model


def _reference_logits(model, codes, **conditions) -> np.ndarray:
    """The naive reference: the full model over the whole sequence; logits[:, t] sees exactly codes[:, :t+1]."""
    return model({"audio": codes, **conditions}).numpy()


@pytest.mark.parametrize("name", ["small", pytest.param("ibab", marks=pytest.mark.slow)])
def test_cached_steps_equal_the_full_model_over_2000_steps(name):
    config = NAMED_CONFIGS[name]
    model = _randomised(config)
    codes = np.random.RandomState(1).randint(0, 256, (1, 2000)).astype(np.int32)
    fast = FastGenerator(model, config, batch_size=1, chunk_size=1024).step_logits(codes)  # 2 chunks: state carries
    reference = _reference_logits(model, codes)
    assert fast.shape == reference.shape == (1, 2000, 256)
    assert np.abs(reference).max() > 1.0  # the comparison is not between near-zero numbers
    assert np.abs(fast - reference).max() <= 1e-4


def test_batch_split_over_workers_kernel_3_and_global_condition_are_exact():
    config = WaveNetConfig(**{**TINY.to_dict(), "kernel_size": 3, "global_condition_classes": 5})
    model = _randomised(config, seed=2)
    codes = np.random.RandomState(3).randint(0, 256, (5, 300)).astype(np.int32)
    genres = np.array([0, 4, 2, 2, 1], np.int32)
    reference = _reference_logits(model, codes, global_condition=genres)
    for workers in (1, 2):
        fast = FastGenerator(model, config, batch_size=5, workers=workers).step_logits(codes, global_condition=genres)
        assert np.abs(fast - reference).max() <= 1e-4


def test_local_condition_path_is_exact():
    config = WaveNetConfig(**{**TINY.to_dict(), "local_condition_channels": 6})
    model = _randomised(config, seed=4)
    rs = np.random.RandomState(5)
    codes = rs.randint(0, 256, (2, 400)).astype(np.int32)
    local = rs.randn(2, 400, 6).astype(np.float32)
    reference = _reference_logits(model, codes, local_condition=local)
    fast = FastGenerator(model, config, batch_size=2).step_logits(codes, local_condition=local)
    assert np.abs(fast - reference).max() <= 1e-4


def test_mixture_output_steps_equal_the_full_model():
    from waveforms import output_head

    config = WaveNetConfig(**{**TINY.to_dict(), "local_condition_channels": 3, "output_mixtures": 4})
    model = _randomised(config, seed=8)
    rs = np.random.RandomState(9)
    codes = rs.randint(0, 256, (2, 300)).astype(np.int32)
    local = rs.randn(2, 300, 3).astype(np.float32)
    outputs = _reference_logits(model, codes, local_condition=local)
    assert outputs.shape == (2, 300, 12)  # the model gives mixture parameters; the generator reads them as classes
    reference = output_head.log_probs(outputs, 4, 256).numpy()
    fast = FastGenerator(model, config, batch_size=2).step_logits(codes, local_condition=local)
    assert fast.shape == (2, 300, 256) and np.abs(np.exp(fast) - np.exp(reference)).max() <= 1e-4
    assert np.abs(fast - reference).max() <= 1e-2  # log-probabilities of unlikely classes too


def test_generator_reads_the_current_weights():
    model = _randomised(TINY, seed=6)
    generator = FastGenerator(model, TINY)
    codes = np.random.RandomState(7).randint(0, 256, (1, 50)).astype(np.int32)
    before = generator.step_logits(codes)
    model.get_layer("output_logits").bias.assign(np.full((256,), 3.0, np.float32))
    after = generator.step_logits(codes)
    np.testing.assert_allclose(after, _reference_logits(model, codes), atol=1e-4)
    assert np.abs(after - before).max() > 1.0


def test_cold_sampling_follows_the_full_model_argmax():
    """At a tiny temperature Gumbel-max is argmax: every generated code is the full model's choice given the past."""
    model = _randomised(TINY, seed=8)
    seed_codes = np.random.RandomState(9).randint(0, 256, (2, 20)).astype(np.int32)
    calls = []
    generator = FastGenerator(model, TINY, batch_size=2, chunk_size=64)
    new = generator.generate(150, temperature=1e-6, seed_codes=seed_codes, progress=lambda d, t: calls.append((d, t)))
    assert new.shape == (2, 150) and new.dtype == np.int32
    whole = np.concatenate([seed_codes, new], axis=1)
    logits = _reference_logits(model, whole)
    top2 = np.sort(logits, axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 1e-3  # skip exact near-ties
    predicted = logits.argmax(axis=-1)[:, 19:-1]  # the prediction for each new sample
    assert (predicted == new)[decided[:, 19:-1]].all()
    assert calls[-1] == (150, 150) and len(calls) == 3  # (19 + 150) steps in chunks of 64


def test_sampling_is_seeded_batched_and_tempered():
    model = _randomised(TINY, seed=10)
    generator = FastGenerator(model, TINY, batch_size=3)
    a = generator.generate(400, seed=1)  # seeded with a receptive field of silence
    assert a.shape == (3, 400) and a.min() >= 0 and a.max() < 256
    np.testing.assert_array_equal(a, generator.generate(400, seed=1))
    assert (a != generator.generate(400, seed=2)).mean() > 0.5
    assert (a[0] != a[1]).mean() > 0.5  # rows draw independent noise
    cold = generator.generate(400, seed=1, temperature=0.05)
    assert len(np.unique(cold)) < len(np.unique(a)) / 2  # a cold sampler keeps to the likely codes
    # splitting the batch over workers draws the same noise per row
    np.testing.assert_array_equal(a, FastGenerator(model, TINY, batch_size=3, workers=3).generate(400, seed=1))


def test_gumbel_noise_has_the_gumbel_moments():
    noise = tf.concat([gumbel_noise(tf.constant(3, tf.int64), tf.constant(t), tf.range(8), 256) for t in range(64)], 0)
    values = noise.numpy().ravel()  # 131072 draws
    assert abs(values.mean() - 0.5772) < 0.02
    assert abs(values.var() - np.pi**2 / 6) < 0.05
    assert np.isfinite(values).all()


def test_the_uniform_behind_the_noise_never_reaches_0_or_1():
    extremes = uniform_from_bits(tf.constant([0, 1, 0xFFFFFEFF, 0xFFFFFFFF], tf.uint32)).numpy()
    assert (extremes > 0).all() and (extremes < 1).all()
    assert np.isfinite(-np.log(-np.log(extremes))).all()  # a finite Gumbel draw: no class is ever forced


def test_bad_arguments_get_one_clear_error():
    model = _randomised(TINY)
    generator = FastGenerator(model, TINY, batch_size=2)
    with pytest.raises(ValueError, match="seed_codes must have shape"):
        generator.generate(10, seed_codes=np.zeros((3, 5), np.int32))
    with pytest.raises(ValueError, match=r"codes must be integer codes in \[0, 256\)"):
        generator.step_logits(np.full((2, 5), 256))
    with pytest.raises(ValueError, match="temperature"):
        generator.generate(10, temperature=0)
    with pytest.raises(ValueError, match="global_condition given"):
        generator.generate(10, global_condition=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="missing layers"):
        FastGenerator(model, NAMED_CONFIGS["small"])


def test_min_p_never_draws_a_code_less_likely_than_min_p_times_the_likeliest():
    model = _randomised(TINY, seed=11)
    generator = FastGenerator(model, TINY, batch_size=2)
    seed_codes = np.random.RandomState(3).randint(0, 256, (2, 40)).astype(np.int32)
    for min_p in (0.0, 0.3):
        new = generator.generate(300, min_p=min_p, seed=5, seed_codes=seed_codes)
        logits = generator.step_logits(np.concatenate([seed_codes, new], axis=1))[:, 39:-1]  # predicts each new code
        probability = np.exp(logits - logits.max(axis=-1, keepdims=True))  # relative to the likeliest, (2, 300, Q)
        drawn = np.take_along_axis(probability, new[..., None], axis=-1)[..., 0]  # (2, 300)
        if min_p:
            assert drawn.min() >= min_p * (1 - 1e-4)
        else:
            assert drawn.min() < 0.3  # without truncation the random model's unlikely codes do get drawn
    greedy = generator.generate(200, min_p=1.0, seed=5, seed_codes=seed_codes)
    np.testing.assert_array_equal(greedy, generator.generate(200, min_p=1.0, seed=6, seed_codes=seed_codes))


def test_resampling_copies_candidates_by_weight_and_keeps_equal_ones_in_place():
    from waveforms.fastgen import resample

    same = resample(np.zeros((2, 4)), np.array([0.3, 0.9]))
    np.testing.assert_array_equal(same, [[0, 1, 2, 3], [4, 5, 6, 7]])  # rows index the whole batch
    one = resample(np.log([[1e-9, 1.0, 1e-9, 1e-9]]), np.array([0.5]))
    np.testing.assert_array_equal(one, [[1, 1, 1, 1]])
    # weights 5/8, 2/8, 1/8: systematic resampling gives 5, 2 and 1 of 8 copies whatever the uniform
    for u in (0.0, 0.4, 0.99):
        parents = resample(np.log([[5, 2, 1, 1e-12, 1e-12, 1e-12, 1e-12, 1e-12]]), np.array([u]))[0]
        assert np.bincount(parents, minlength=8)[:3].tolist() == [5, 2, 1]


def _log_likelihood(generator, seed_codes, new) -> np.ndarray:
    """Log-probability (nats, temperature 1) of each row's new codes after its seed, teacher-forced."""
    logits = generator.step_logits(np.concatenate([seed_codes, new], axis=1))[:, seed_codes.shape[1] - 1 : -1]
    log_p = tf.nn.log_softmax(logits).numpy()
    return np.take_along_axis(log_p, new[..., None], axis=-1)[..., 0].sum(axis=1)


def test_particles_follow_likelier_passages_and_stay_seeded_per_clip():
    """Candidates resampled by their chunk's likelihood make clips the model finds likelier than plain draws, over
    every sampling seed tried (not a lucky one); the clips are a pure function of the seed, whatever the shards."""
    model = _randomised(TINY, seed=12)
    seed_codes = np.random.RandomState(4).randint(0, 256, (2, 30)).astype(np.int32)
    plain = FastGenerator(model, TINY, batch_size=2)
    particles = FastGenerator(model, TINY, batch_size=2, particles=8, chunk_size=32)
    gains = []
    for seed in range(4):
        base = plain.generate(256, seed=seed, seed_codes=seed_codes)
        tilted = particles.generate(256, seed=seed, seed_codes=seed_codes)
        assert tilted.shape == (2, 256) and tilted.dtype == np.int32
        gains.append(_log_likelihood(plain, seed_codes, tilted) - _log_likelihood(plain, seed_codes, base))
    gains = np.concatenate(gains)  # 8 clips
    assert (gains > 0).all(), gains
    again = FastGenerator(model, TINY, batch_size=2, particles=8, chunk_size=32, workers=2)
    np.testing.assert_array_equal(again.generate(256, seed=3, seed_codes=seed_codes), tilted)
    # sharpen 0: unweighted candidates stay in place, so each clip is its first candidate's plain draw
    unweighted = particles.generate(256, seed=3, seed_codes=seed_codes, sharpen=0.0)
    rows = FastGenerator(model, TINY, batch_size=16).generate(256, seed=3, seed_codes=np.repeat(seed_codes, 8, axis=0))
    np.testing.assert_array_equal(unweighted, rows[::8])
    with pytest.raises(ValueError, match="sharpen"):
        particles.generate(10, sharpen=-1.0)
    with pytest.raises(ValueError, match="particles"):
        FastGenerator(model, TINY, particles=0)
