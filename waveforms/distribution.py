"""Where training runs: the distribution strategy (one device, several GPUs, or workers under TF_CONFIG), which worker
is the chief, collectives every worker joins, and the mixed-precision policy for the GPUs present."""

from __future__ import annotations

import contextlib
import os


def choose_precision(requested: str, gpu_capabilities: list[tuple[int, int]]) -> str:
    """The dtype policy for `requested` on GPUs of these compute capabilities (none: CPU).


    auto: float32 on CPU (measured on our 2-core AMX CPU, busy: `small` trained at 18-29k samples/s in float32 and
    14-24k in mixed_bfloat16, float32 ahead in both runs); mixed_bfloat16 when every GPU is Ampere or newer (>= 8.0:
    bf16 tensor cores; bf16 has float32's range, so no loss scaling); else mixed_float16 (Volta/Turing tensor cores are
    fp16-only, and its narrow range needs loss scaling).
    """
    if requested != "auto":
        return requested
    if not gpu_capabilities:
        return "float32"
    return "mixed_bfloat16" if min(gpu_capabilities) >= (8, 0) else "mixed_float16"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    import tensorflow as tf

    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")]  # fmt: skip


@contextlib.contextmanager
def dtype_policy(name: str):
    """Layers built inside compute in `name` (their variables stay float32); the global policy is restored after, so
    the exported copy (`_export`) is plain float32."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def select_strategy():
    """MultiWorkerMirrored under TF_CONFIG (Kubeflow TFJob), Mirrored on several GPUs, else the default strategy."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster or resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def agreed_max(strategy, value: float) -> float:
    """The largest of every worker's value (a collective), or the value itself without other workers."""
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value
    local = tf.constant(value, tf.float64)
    return float(strategy.reduce("MAX", strategy.run(lambda: local), axis=None))


def worker_name(strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "worker"
    return f"worker {resolver.task_type}:{resolver.task_id}"


def barrier(strategy) -> None:
    """A collective every worker must join: returns only when all have finished their work."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
