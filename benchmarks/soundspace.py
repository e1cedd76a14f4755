"""Sound-space decoding speed: a 5×5 grid of 1-s clips decoded in one batched fast-generation pass.

Goals: at least 20,000 aggregate samples/s on 2 cores (issue 5), and the whole grid in under 30 s (issue 12: the floor
that the decoder's receptive field, now over a pitch period of the lowest notes, must still meet). Baseline measured in
the same run: the same decoder decoding one point at a time (batch 1), which is how a per-clip decoder would fill the grid.
Weights are untrained: generation cost does not depend on their values. The timed decode includes the pitch filter at
its default strength and the envelope filter, as `waveforms soundspace` applies them.
"""

from __future__ import annotations

import time

import numpy as np

GRID = 5
SECONDS = 1.0
GOAL = 20_000.0
GRID_SECONDS_GOAL = 30.0


def _decode_seconds(autoencoder, embeddings, num_samples: int) -> float:
    """Decoding as `waveforms soundspace` does it: codes, then audio through the default pitch and envelope filters."""
    from waveforms.soundspace import ENVELOPE_FILTER, PITCH_FILTER, decode_points

    autoencoder.decode(embeddings[..., : autoencoder.config.embedding_width], 256, seed=1)  # compile (not timed)
    start = time.perf_counter()
    decode_points(autoencoder, embeddings, num_samples, temperature=1.0, seed=2, pitch_filter=PITCH_FILTER,
                  envelope_filter=ENVELOPE_FILTER)  # fmt: skip
    return time.perf_counter() - start


def run() -> list[dict]:
    from waveforms.autoencoder import AutoencoderConfig, build_autoencoder
    from waveforms.soundspace import encode_corners, grid_points, interpolate

    config = AutoencoderConfig()
    autoencoder = build_autoencoder(config)
    num_samples = int(SECONDS * config.sample_rate)
    rng = np.random.default_rng(0)
    # 4 corners of noise at different levels: embeddings from the untrained encoder, envelopes the noise's
    noise = rng.normal(size=(4, config.frames(num_samples) * config.hop_length)) * np.array(
        [[0.5], [0.1], [0.2], [0.05]]
    )
    corners = encode_corners(autoencoder, noise.astype(np.float32))
    weights = np.array([p.weights for p in grid_points(4, GRID)], np.float32)
    embeddings = interpolate(corners, weights)  # (25, F, E)

    grid_seconds = _decode_seconds(autoencoder, embeddings, num_samples)
    batched = len(embeddings) * num_samples / grid_seconds
    one_at_a_time = num_samples / _decode_seconds(autoencoder, embeddings[:1], num_samples)
    decoder = config.decoder_config
    note = (
        f"{GRID}x{GRID} grid, {SECONDS:g}-s clips at {config.sample_rate} Hz, decoder {decoder.num_layers} layers "
        f"R{decoder.residual_channels}/D{decoder.dilation_channels}/S{decoder.skip_channels}, "
        f"receptive field {decoder.receptive_field}; goal >= {GOAL:,.0f}; batched/batch-1 = {batched / one_at_a_time:.1f}x"
    )
    return [
        {
            "name": "soundspace decode, 5x5 grid in one batch (aggregate samples/s)",
            "value": round(batched, 1),
            "unit": "samples/s",
            "baseline_name": "same decoder, one grid point at a time (batch 1)",
            "baseline_value": round(one_at_a_time, 1),
            "note": note,
        },
        {
            "name": f"soundspace decode, the whole {GRID}x{GRID} grid of {SECONDS:g}-s clips (seconds)",
            "value": round(grid_seconds, 2),
            "unit": "s",
            "target": f"< {GRID_SECONDS_GOAL:g}",
            "note": f"decoder receptive field {decoder.receptive_field} samples",
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
