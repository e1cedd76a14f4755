"""Conversion speed: mp3 44.1 kHz stereo -> 16 kHz mu-law TFRecords, end to end on all cores, against ffmpeg's decode
alone (one process, the per-core anchor) measured in the same run. Target: >= 500x real time on 2 cores."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from waveforms.convert import ConvertConfig, convert

SONGS = 8
SONG_SECONDS = 120


def _make_songs(folder: str) -> list[str]:
    paths = []
    for index in range(SONGS):
        path = os.path.join(folder, "bench", f"song{index:02d}.mp3")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # a chord plus noise: a busy spectrum like music, so the mp3 decoder does real work
        source = (f"sine=f={220 + 20 * index}:d={SONG_SECONDS},volume=0.3[a];sine=f={330 + 15 * index}:d={SONG_SECONDS}[b];"
                  f"anoisesrc=d={SONG_SECONDS}:a=0.05[c];[a][b][c]amix=inputs=3")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-filter_complex", source, "-ar", "44100", "-ac", "2",
                        "-b:a", "192k", path], check=True)
        paths.append(path)
    return paths


def _ffmpeg_decode_seconds(paths: list[str]) -> float:
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["ffmpeg", "-loglevel", "error", "-i", path, "-ac", "1", "-ar", "16000", "-f", "s16le", "-y",
                        "/dev/null"], check=True)
    return time.perf_counter() - started


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        paths = _make_songs(folder)
        audio_seconds = SONGS * SONG_SECONDS
        baseline = audio_seconds / _ffmpeg_decode_seconds(paths)
        started = time.perf_counter()
        convert(os.path.join(folder, "bench"), os.path.join(folder, "out"), ConvertConfig(workers=os.cpu_count() or 2),
                progress=False)
        ours = audio_seconds / (time.perf_counter() - started)
    return [{
        "name": f"convert {SONGS} x {SONG_SECONDS} s mp3 44.1k stereo -> 16k mu-law TFRecords ({os.cpu_count()} workers)",
        "value": ours, "unit": "x real time", "baseline_name": "ffmpeg decode alone, 1 process",
        "baseline_value": baseline, "target": 500,
    }]
