"""The output head: logits or a discretised mixture of logistics, both read as a distribution over the Q classes."""

import numpy as np
import tensorflow as tf

from waveforms import output_head


def _random_mixture(rng, shape, mixtures):
    weights = rng.normal(0, 2, shape + (mixtures,))
    means = rng.uniform(-1.2, 1.2, shape + (mixtures,))
    log_scales = rng.uniform(-9, 1, shape + (mixtures,))  # from below the floor to wider than the range
    return np.concatenate([weights, means, log_scales], axis=-1).astype(np.float32)


def test_mixture_probabilities_sum_to_one_and_nll_reads_the_same_distribution():
    rng = np.random.default_rng(0)
    outputs = _random_mixture(rng, (3, 50), 4)
    log_probs = output_head.log_probs(outputs, 4, 256).numpy()  # (3, 50, 256)
    assert np.isfinite(log_probs).all()
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=-1), 1.0, atol=1e-4)
    targets = rng.integers(0, 256, (3, 50))
    targets[0, :2] = [0, 255]  # the open end bins
    nll = output_head.nll(outputs, targets, 4, 256).numpy()
    np.testing.assert_allclose(
        nll, -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0], rtol=1e-4, atol=1e-4
    )


def test_a_narrow_logistic_puts_its_mass_on_its_bin_and_the_tails_stay_finite():
    classes, bin_code = 256, 77
    centre = bin_code * 2 / (classes - 1) - 1
    outputs = np.array([[0.0, centre, output_head.MIN_LOG_SCALE]], np.float32)  # one logistic, the narrowest
    log_probs = output_head.log_probs(outputs, 1, classes).numpy()[0]
    assert np.exp(log_probs[bin_code]) > 0.97
    assert np.isfinite(log_probs).all() and log_probs[0] < -100 and log_probs[255] < -100
    with tf.GradientTape() as tape:  # far in a tail the loss still has a finite gradient that points at the target
        variable = tf.Variable(outputs)
        loss = output_head.nll(variable, tf.constant([3]), 1, classes)
    gradient = tape.gradient(loss, variable).numpy()
    assert np.isfinite(gradient).all() and gradient[0, 1] > 0  # lowering the mean lowers the loss


def test_logits_pass_through_as_a_softmax():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (2, 7, 16)).astype(np.float32)
    targets = rng.integers(0, 16, (2, 7))
    expected = -(np.take_along_axis(logits, targets[..., None], -1)[..., 0] - np.log(np.exp(logits).sum(-1)))
    np.testing.assert_allclose(output_head.nll(logits, targets, 0, 16).numpy(), expected, rtol=1e-5)
    assert output_head.width(0, 16) == 16 and output_head.width(5, 16) == 15
