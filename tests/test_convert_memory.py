"""Conversion memory is flat in song length: past max_in_memory_seconds a song is encoded to a scratch file and written
one record at a time, and its data-profile windows are the only part decoded back to float."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 8000  # the input's rate and the target's: the decode is cheap, the test measures our side
CONVERT = """
import json, resource, sys
from waveforms.convert import ConvertConfig, convert
config = ConvertConfig(sample_rate=8000, max_in_memory_seconds=120, validation_fraction=0, workers=1)
manifest = convert(sys.argv[1], sys.argv[2], config, progress=False)
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "samples": manifest["totals"]["samples"], "skipped": manifest["skipped"]}))
"""


def _write_song(path, seconds: int) -> None:
    """A 16-bit mono WAV of a tone with a slow tremolo plus noise, written a minute at a time."""
    rng = np.random.default_rng(seconds)
    path.parent.mkdir(parents=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for minute in range(0, seconds, 60):
            t = np.arange(minute * SAMPLE_RATE, (minute + 60) * SAMPLE_RATE) / SAMPLE_RATE
            x = 0.5 * np.sin(2 * np.pi * 220 * t) * (
                0.6 + 0.4 * np.sin(2 * np.pi * t / 7)
            ) + 0.02 * rng.standard_normal(t.size)
            out.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def _convert_peak_kib(source, out) -> tuple[int, int]:
    """(peak RSS of the converting process in KiB, samples converted)."""
    result = subprocess.run([sys.executable, "-c", CONVERT, str(source), str(out)], env={**os.environ, "PYTHONPATH": ROOT},
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report["skipped"]
    return report["peak_kib"], report["samples"]


def test_peak_memory_does_not_grow_with_song_length(tmp_path):
    peaks = {}
    for minutes in (10, 60):
        _write_song(tmp_path / f"in{minutes}" / "song.wav", minutes * 60)
        peaks[minutes], samples = _convert_peak_kib(tmp_path / f"in{minutes}", tmp_path / f"out{minutes}")
        assert samples == minutes * 60 * SAMPLE_RATE
    growth_mib = (peaks[60] - peaks[10]) / 1024
    # 50 more minutes are 24 MB of mu-law codes and 96 MB as float32: holding either would show here
    assert growth_mib < 12, f"peak RSS grew by {growth_mib:.0f} MiB from a 10-min to a 60-min song ({peaks})"
