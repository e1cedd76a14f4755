"""Generation speed: the compiled cached sampler beside the naive and per-step baselines, measured in one run.

    python -m benchmarks.generation          (from the repository root; prints one JSON line per result)

Models have random weights (speed does not depend on them). Samples/s are wall-clock on this machine; the note also
gives samples per CPU-second of this process, which is what an idle machine would show when the machine is shared.
Targets from the issue (2 cores): small batch 1 >= 16,000; small batch 16 aggregate >= 100,000; ibab batch 1 >= 4,000.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def _timed(function, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time over `repeats` calls."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def _naive_rate(model, config, samples: int) -> float:
    """Recompute the whole receptive field with the full model for every sample (compiled forward pass)."""
    import tensorflow as tf

    forward = tf.function(lambda codes: model({"audio": codes})[:, -1], jit_compile=True)
    window = np.full((1, config.receptive_field), 128, np.int32)
    forward(window)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(samples):
        logits = forward(window).numpy()[0]
        code = int(np.argmax(logits + rng.gumbel(size=logits.shape)))
        window = np.concatenate([window[:, 1:], [[code]]], axis=1).astype(np.int32)
    return samples / (time.perf_counter() - started)


def run() -> list[dict]:
    from waveforms.fastgen import FastGenerator, configure_threads

    threads_set = configure_threads()
    from waveforms.model import NAMED_CONFIGS, build_wavenet

    load = os.getloadavg()[0]
    rows = []
    small, ibab = NAMED_CONFIGS["small"], NAMED_CONFIGS["ibab"]
    small_model, ibab_model = build_wavenet(small), build_wavenet(ibab)

    def measure(model, config, batch, steps, repeats=3, **kwargs):
        generator = FastGenerator(model, config, batch_size=batch, **kwargs)
        silence = np.full((batch, 1), 128, np.int32)
        generator.generate(min(steps, 256), seed_codes=silence)  # compile
        wall, cpu = _timed(lambda: generator.generate(steps, seed_codes=silence), repeats)
        return batch * steps / wall, batch * steps / cpu

    naive = _naive_rate(small_model, small, samples=12)
    per_step, _ = measure(small_model, small, 1, 300, repeats=2, chunk_size=1)
    context = f"load average {load:.1f} on {os.cpu_count()} cores; intra-op threads=1: {threads_set}"

    value, per_cpu = measure(small_model, small, 1, 16384)
    rows.append(
        dict(
            name="generation small batch 1",
            value=value,
            unit="samples/s",
            baseline_name="naive recompute",
            baseline_value=naive,
            target=16000,
            note=f"{value / naive:,.0f}x naive, {value / per_step:.0f}x per-step ({per_step:,.0f}/s, one "
            f"compiled call per sample); {per_cpu:,.0f} per CPU-second; {context}",
        )
    )
    value, per_cpu = measure(small_model, small, 16, 4096)
    rows.append(
        dict(
            name="generation small batch 16 (aggregate)",
            value=value,
            unit="samples/s",
            baseline_name="ours, batch 1",
            baseline_value=rows[0]["value"],
            target=100000,
            note=f"2 shards of 8, one per core; {per_cpu:,.0f} per CPU-second; {context}",
        )
    )
    value, per_cpu = measure(ibab_model, ibab, 1, 4096)
    ibab_naive = _naive_rate(ibab_model, ibab, samples=4)
    rows.append(
        dict(
            name="generation ibab batch 1",
            value=value,
            unit="samples/s",
            baseline_name="naive recompute",
            baseline_value=ibab_naive,
            target=4000,
            note=f"{value / ibab_naive:,.0f}x naive; {per_cpu:,.0f} per CPU-second; {context}",
        )
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
