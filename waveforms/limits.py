"""Upper bounds on every size parameter, checked before any work: a value outside gets one ValueError line naming the
flag and its range, never an OverflowError, a hang or a 600 GiB allocation hours later.

    generate    --seconds (0, 3600]  --batch [1, 256]       --temperature (0, 10]  + memory estimate
    soundspace  --seconds (0, 60]    --max-batch [1, 4096]  --temperature (0, 10]  + memory estimate (resolution 2..64)
    train       --batch-size [1, 4096]  --target-length [1, 2^20]  --steps [1, 10^9]
    convert     --segment-seconds [0.01, 3600]  --shard-mb (0, 4096]  --workers [1, 64]

The memory estimate (bytes per generated sample x samples x clips held at once) must stay below MEMORY_FRACTION of what
the machine or its cgroup (a Kubernetes memory limit) has available.
"""

from __future__ import annotations

import math

MAX_GENERATE_SECONDS = 3600.0  # one hour per clip: about 5 minutes of sampling at the measured 13k samples/s
MAX_GENERATE_BATCH = 256
MAX_TEMPERATURE = 10.0  # far past the point where sampling is uniform noise
MAX_SOUNDSPACE_SECONDS = 60.0  # a sound space holds short instrument sounds
MAX_SOUNDSPACE_BATCH = 4096
MAX_TRAIN_BATCH = 4096
MAX_TARGET_LENGTH = 1 << 20
MAX_STEPS = 10**9
MAX_INPUT_NOISE = 16.0  # mu-law codes of training input noise: past 2 the demo's model already falls silent
MIN_SEGMENT_SECONDS, MAX_SEGMENT_SECONDS = 0.01, 3600.0
MAX_SHARD_MB = 4096.0
MAX_WORKERS = 64
GENERATED_BYTES_PER_SAMPLE = 16  # int32 codes + float32 audio + a float32 copy while writing, per sample and clip
FILTER_PASS_BYTES = 256 << 20  # working memory of one pass of a filter over decoded clips (pitch, envelope)
MEMORY_FRACTION = 0.8


def check_range(flag: str, value, low: float, high: float, *, integer: bool = False, low_open: bool = False,
                error: type[ValueError] = ValueError) -> None:  # fmt: skip
    """Raise `error` unless low <(=) value <= high, finite, and a whole number when `integer`."""
    kind = "a whole number" if integer else "a number"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    inside = number and math.isfinite(value) and (not integer or float(value).is_integer())
    if not inside or value > high or value < low or (low_open and value == low):
        raise error(f"{flag}: got {value!r}; it must be {kind} in {'(' if low_open else '['}{low:g}, {high:g}]")


def available_memory_bytes() -> int | None:
    """Bytes this process may still use: the smaller of MemAvailable and the cgroup v2 limit's headroom (None if
    neither is known, e.g. not Linux)."""
    found = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as limit, open("/sys/fs/cgroup/memory.current") as current:
            text = limit.read().strip()
            if text != "max":
                found.append(int(text) - int(current.read().strip()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_memory(what: str, needed_bytes: float, hint: str) -> None:
    available = available_memory_bytes()
    if available is not None and needed_bytes > MEMORY_FRACTION * available:
        raise ValueError(
            f"{what} needs about {needed_bytes / 2**30:.1f} GiB of memory, more than {MEMORY_FRACTION:.0%} of the "
            f"{available / 2**30:.1f} GiB available; {hint}"
        )


def rows_per_pass(length: int, bytes_per_sample: int, most: int = 64) -> int:
    """How many clips of `length` samples a filter that needs `bytes_per_sample` of temporaries per sample takes in one
    pass: at least 1, at most `most`, within FILTER_PASS_BYTES (a 60-s sound space would otherwise need GBs)."""
    return max(1, min(most, FILTER_PASS_BYTES // max(1, length * bytes_per_sample)))
