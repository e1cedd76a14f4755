"""Conversion speed by song length: 30-s mp3 clips (the FMA archives' format) and 2-minute mp3 songs, each converted
with one ffmpeg process per file (the old path, `decode_batch=1`) and with several files per process (the default),
side by side in one run (target: >= 800x real time on 2 cores for both lengths).

An ffmpeg start costs about as much CPU as decoding a 30-s clip, which is what batching removes. Rounds interleave the
four conversions so load from other processes hits all alike; rows give medians over rounds, and the notes give the
per-round ratio new/old (what to compare on a shared machine) and the CPU-time rate (audio seconds per CPU second of
this process and its ffmpeg children, independent of how busy the machine is; times the core count = an idle machine).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import tempfile

from benchmarks.conversion import _make_songs, _measure
from waveforms.convert import ConvertConfig, _batches, convert, list_songs

SETS = {"30-s clips": (128, 30), "2-min songs": (32, 120)}  # name -> (files, seconds each): 64 min of audio each
ROUNDS = 3
TARGET = 800


def run() -> list[dict]:
    workers = os.cpu_count() or 2
    new = ConvertConfig(workers=workers, validation_fraction=0.1)
    paths = {"old": dataclasses.replace(new, decode_batch=1), "new": new}
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        sources, per_process = {}, {}
        for index, (name, (count, seconds)) in enumerate(SETS.items()):
            _make_songs(folder, count, seconds, name=f"set{index}")
            sources[name] = (os.path.join(folder, f"set{index}"), count * seconds)
            per_process[name] = count / len(_batches(list_songs(sources[name][0], 0), new.decode_batch, workers))
        for round_index in range(ROUNDS):
            for name, (source, audio_seconds) in sources.items():
                for path, config in paths.items():
                    out = os.path.join(folder, f"out-{round_index}-{path}")
                    seconds, cpu_seconds = _measure(lambda: convert(source, out, config, progress=False))  # noqa: B023
                    shutil.rmtree(out)
                    wall.setdefault((name, path), []).append(audio_seconds / seconds)
                    cpu.setdefault((name, path), []).append(audio_seconds / cpu_seconds)
    rows = []
    for name, (count, seconds) in SETS.items():
        old, new_rates = wall[(name, "old")], wall[(name, "new")]
        ratio = statistics.median(n / o for n, o in zip(new_rates, old, strict=True))
        cpu_old, cpu_new = statistics.median(cpu[(name, "old")]), statistics.median(cpu[(name, "new")])
        rows.append({
            "name": f"convert {count} x {seconds} s mp3 44.1k stereo -> 16k mu-law, {per_process[name]:.0f} files per "
                    f"ffmpeg ({workers} workers)",
            "value": statistics.median(new_rates), "unit": "x real time",
            "baseline_name": "one ffmpeg per file (decode_batch=1)", "baseline_value": statistics.median(old),
            "target": TARGET,
            "note": f"median of {ROUNDS} interleaved rounds; median per-round ratio {ratio:.2f}x; per round "
                    f"{min(new_rates):.0f}-{max(new_rates):.0f}x (old {min(old):.0f}-{max(old):.0f}x); CPU-time rate "
                    f"{cpu_new:.0f}x per core (old {cpu_old:.0f}x, ratio {cpu_new / cpu_old:.2f}x): "
                    f"{workers * cpu_new:.0f}x on {workers} idle cores",
        })  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
