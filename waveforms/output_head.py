"""What a WaveNet's output means: logits over the Q mu-law classes, or a discretised mixture of logistics (PixelCNN++,
Salimans et al. 2017) over the mu-law value in [-1, 1] cut into the same Q bins.

Either way a prediction is a distribution over the same 8-bit codes, so bits per sample stay comparable: the mixture's
log-probability of class q is the mass its logistics put on bin q ([centre - 1/(Q-1), centre + 1/(Q-1)], the two end
bins open to ±infinity). Training and evaluation need only the target's bin (`nll`: O(M) a sample, not O(M·Q));
sampling and anything that reads the whole distribution use `log_probs` (O(M·Q)).

`mixtures` is WaveNetConfig.output_mixtures: 0 = logits.
"""

from __future__ import annotations

import numpy as np

MIN_LOG_SCALE = -7.0  # the narrowest logistic (scale 9e-4, a quarter of half a bin) puts 97% of its mass in its bin


def _bin_log_mass(offset, log_scale, first, last, half_width: float):
    """log of a logistic's mass on a bin: offset = bin centre - mean, elementwise with log_scale (broadcast), first /
    last: booleans marking the open end bins."""
    import tensorflow as tf

    inverse_scale = tf.exp(-log_scale)
    upper, lower = (offset + half_width) * inverse_scale, (offset - half_width) * inverse_scale
    log_cdf_upper = upper - tf.nn.softplus(upper)  # log sigmoid(upper): the first bin's mass
    log_survival_lower = -tf.nn.softplus(lower)  # log (1 - sigmoid(lower)): the last bin's
    mass = tf.sigmoid(upper) - tf.sigmoid(lower)
    # far into a tail the difference of two sigmoids rounds to 0: there the density at the centre times the bin width
    centre = offset * inverse_scale
    log_density_mass = centre - log_scale - 2.0 * tf.nn.softplus(centre) + np.log(2.0 * half_width)
    interior = tf.where(mass > 1e-5, tf.math.log(tf.maximum(mass, 1e-12)), log_density_mass)
    return tf.where(first, log_cdf_upper, tf.where(last, log_survival_lower, interior))


def _split(outputs, mixtures: int):
    import tensorflow as tf

    outputs = tf.cast(outputs, tf.float32)
    log_weights = tf.nn.log_softmax(outputs[..., :mixtures])
    means = outputs[..., mixtures : 2 * mixtures]
    log_scales = tf.maximum(outputs[..., 2 * mixtures : 3 * mixtures], MIN_LOG_SCALE)
    return log_weights, means, log_scales


def width(mixtures: int, classes: int) -> int:
    """Channels of the output layer."""
    return 3 * mixtures if mixtures else classes


def log_probs(outputs, mixtures: int, classes: int):
    """Model outputs (..., width) -> log-probabilities of every class (..., Q), float32 (logits pass through: a
    softmax of them is the distribution)."""
    import tensorflow as tf

    if not mixtures:
        return tf.cast(outputs, tf.float32)
    log_weights, means, log_scales = _split(outputs, mixtures)  # each (..., M)
    centres = tf.linspace(-1.0, 1.0, classes)  # (Q,)
    q = tf.range(classes)
    log_mass = _bin_log_mass(centres - means[..., None], log_scales[..., None], q == 0, q == classes - 1,
                             1.0 / (classes - 1))  # (..., M, Q)  # fmt: skip
    return tf.reduce_logsumexp(log_mass + log_weights[..., None], axis=-2)


def nll(outputs, targets, mixtures: int, classes: int):
    """Model outputs (..., width), int targets (...) -> NLL in nats (...)."""
    import tensorflow as tf

    if not mixtures:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(outputs, tf.float32))
    log_weights, means, log_scales = _split(outputs, mixtures)
    targets = tf.cast(targets, tf.int32)
    centres = tf.cast(targets, tf.float32)[..., None] * (2.0 / (classes - 1)) - 1.0  # (..., 1)
    log_mass = _bin_log_mass(centres - means, log_scales, (targets == 0)[..., None], (targets == classes - 1)[..., None],
                             1.0 / (classes - 1))  # (..., M)  # fmt: skip
    return -tf.reduce_logsumexp(log_mass + log_weights, axis=-1)
