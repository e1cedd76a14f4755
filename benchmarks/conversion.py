"""Conversion speed: mp3 44.1 kHz stereo -> 16 kHz mu-law TFRecords, end to end on all cores (target >= 500x real time
on 2 cores), against ffmpeg's decode alone on the same files, measured side by side.

Each round runs, in turn: ffmpeg alone in one process (the issue's per-core anchor), ours (`convert` with one worker per
core) and ffmpeg alone, one process per file and one per core at a time, with the exact decode command ours runs (the
ceiling of one process per file: ours minus everything that is not ffmpeg; ours batches small files into one ffmpeg, see
benchmarks/batching.py, and can pass it). The machine is shared, so wall-clock rates swing from round to round; the rows give
medians over rounds, and the CPU-time row (CPU seconds spent per audio second, self and children) does not depend on
how busy the machine is.
"""

from __future__ import annotations

import concurrent.futures
import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from waveforms import audio
from waveforms.convert import ConvertConfig, convert

SONGS = 8
SONG_SECONDS = 120
ROUNDS = 5


def _make_songs(folder: str, count: int = SONGS, seconds: int = SONG_SECONDS, name: str = "bench") -> list[str]:
    paths = []
    for index in range(count):
        path = os.path.join(folder, name, f"song{index:02d}.mp3")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # a chord plus noise: a busy spectrum like music, so the mp3 decoder does real work
        source = (f"sine=f={220 + 20 * index}:d={seconds},volume=0.3[a];sine=f={330 + 15 * index}:d={seconds}[b];"
                  f"anoisesrc=d={seconds}:a=0.05:seed={index}[c];[a][b][c]amix=inputs=3")  # fmt: skip
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-filter_complex", source, "-ar", "44100",
                        "-ac", "2", "-b:a", "192k", path], check=True)  # fmt: skip
        paths.append(path)
    return paths


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (the ffmpeg processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _measure(work) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of work()."""
    cpu, started = _cpu_seconds(), time.perf_counter()
    work()
    return time.perf_counter() - started, _cpu_seconds() - cpu


def _ffmpeg_one_process(paths: list[str]) -> None:
    for path in paths:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-ac", "1", "-ar", "16000", "-f", "s16le",
                        "-y", "/dev/null"], check=True)  # fmt: skip


def _ffmpeg_per_core(paths: list[str], workers: int) -> None:
    # the decode command convert runs (through audio.iter_decode), writing to /dev/null instead of a pipe
    commands = [audio._decode_command(Path(path), 16000)[:-1] + ["-y", "/dev/null"] for path in paths]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda command: subprocess.run(command, check=True, stderr=subprocess.DEVNULL), commands))


def run() -> list[dict]:
    workers = os.cpu_count() or 2
    audio_seconds = SONGS * SONG_SECONDS
    rates: dict[str, list[float]] = {"ffmpeg": [], "ours": [], "ceiling": []}
    cpu_rates: dict[str, list[float]] = {"ffmpeg": [], "ours": []}
    with tempfile.TemporaryDirectory() as folder:
        paths = _make_songs(folder)
        source, config = os.path.join(folder, "bench"), ConvertConfig(workers=workers)
        for round_index in range(ROUNDS):
            works = {
                "ffmpeg": lambda: _ffmpeg_one_process(paths),
                "ours": lambda out=os.path.join(folder, f"out{round_index}"): convert(
                    source, out, config, progress=False
                ),
                "ceiling": lambda: _ffmpeg_per_core(paths, workers),
            }
            for name, work in works.items():
                wall, cpu = _measure(work)
                rates[name].append(audio_seconds / wall)
                if name in cpu_rates:
                    cpu_rates[name].append(audio_seconds / cpu)
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio_to_ffmpeg = statistics.median(o / f for o, f in zip(rates["ours"], rates["ffmpeg"], strict=True))
    ratio_to_ceiling = statistics.median(o / c for o, c in zip(rates["ours"], rates["ceiling"], strict=True))
    spread = f"ours per round {min(rates['ours']):.0f}-{max(rates['ours']):.0f}x"
    return [
        {"name": f"convert {SONGS} x {SONG_SECONDS} s mp3 44.1k stereo -> 16k mu-law TFRecords ({workers} workers)",
         "value": median["ours"], "unit": "x real time", "baseline_name": "ffmpeg decode alone, 1 process",
         "baseline_value": median["ffmpeg"], "target": 500,
         "note": f"median of {ROUNDS} interleaved rounds; median per-round ratio {ratio_to_ffmpeg:.2f}x; {spread}"},
        {"name": f"same, against ffmpeg alone with our decode command, one process per file, {workers} at a time",
         "value": median["ours"], "unit": "x real time", "baseline_name": f"ffmpeg alone, {workers} processes",
         "baseline_value": median["ceiling"],
         "note": f"median per-round ratio {ratio_to_ceiling:.2f}x; the rest is Python, hashing, shards, manifest"},
        {"name": "convert, CPU efficiency (audio seconds per CPU second, ffmpeg children included)",
         "value": statistics.median(cpu_rates["ours"]), "unit": "x real time per core",
         "baseline_name": "ffmpeg decode alone, 1 process", "baseline_value": statistics.median(cpu_rates["ffmpeg"]),
         "note": "independent of machine load; times the core count for the rate on an idle machine"},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(row)
