"""tf.data throughput: local shards and SeaweedFS on loopback, each beside a plain baseline measured in the same run.

    python -m benchmarks.dataset            (from the repository root; prints one JSON line per result)

Samples/s counts the samples a training step receives (x: batch x window_length). Targets from the issue: local
>= 100x a small-WaveNet training step (a plain Keras step trains about 8.3k samples/s, so >= 1 M/s; we aim at 2-5 M/s),
object storage >= 10 M samples/s.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from waveforms import dataset, records, storage
from waveforms.manifest import load_manifest, shard_uris

SHARDS = 4
RECORDS_PER_SHARD = 10
RECORD_SAMPLES = 480_000  # 30 s at 16 kHz, convert's default segment
WINDOW_LENGTH = 8192  # small WaveNet: receptive field 2047 + about 6k predicted samples
BATCH_SIZE = 8


def write_shards(root: str) -> str:
    """SHARDS x RECORDS_PER_SHARD records of random codes plus a manifest, the way convert lays them out."""
    rng = np.random.default_rng(0)
    manifest = {
        "format": records.FORMAT,
        "sample_rate": 16000,
        "encoding": records.ENCODING,
        "segment_samples": RECORD_SAMPLES,
        "genres": ["noise"],
        "songs": [],
        "skipped": [],
        "totals": {},
        "splits": {
            "train": {
                "shards": [],
                "records": SHARDS * RECORDS_PER_SHARD,
                "samples": SHARDS * RECORDS_PER_SHARD * RECORD_SAMPLES,
            }
        },
    }
    for shard in range(SHARDS):
        name = f"train-{shard:05d}-of-{SHARDS:05d}.tfrecord"
        with open(os.path.join(root, name), "wb") as handle:
            for index in range(RECORDS_PER_SHARD):
                song_id = f"noise/{shard}-{index}"
                codes = rng.integers(0, 256, RECORD_SAMPLES, dtype=np.uint8).tobytes()
                handle.write(
                    records.frame(records.encode_example(records.Segment(codes, song_id, "noise", 0, 16000, 0)))
                )
                manifest["songs"].append(
                    {"song_id": song_id, "genre": "noise", "split": "train", "samples": RECORD_SAMPLES}
                )
        manifest["splits"]["train"]["shards"].append(
            {"file": name, "records": RECORDS_PER_SHARD, "samples": RECORDS_PER_SHARD * RECORD_SAMPLES}
        )
    path = os.path.join(root, "manifest.json")
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return path


def _timed(function) -> tuple[float, float]:
    """-> (samples, seconds) of the best of two runs (the first also warms up tracing and caches)."""
    best = None
    for _ in range(2):
        started = time.perf_counter()
        samples = function()
        seconds = time.perf_counter() - started
        best = (samples, seconds) if best is None or seconds < best[1] else best
    return best


def _windows_samples(manifest_uri: str) -> int:
    ds = dataset.make_dataset(manifest_uri, window_length=WINDOW_LENGTH, batch_size=BATCH_SIZE, seed=0, repeat=False)
    return sum(int(x.shape[0]) * int(x.shape[1]) for x, _ in ds)


def _raw_samples(uris: list[str]) -> int:
    """Plain read: serialized records only (no parse, no windows); bytes ~ samples (one byte per sample)."""
    return sum(len(record) for record in dataset.record_dataset(uris).as_numpy_iterator())


def _download_samples(uris: list[str]) -> int:
    return sum(len(storage.read_bytes(uri)) for uri in uris)


def _rate(measured: tuple[float, float]) -> float:
    samples, seconds = measured
    return round(samples / seconds, 0)


def run() -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3server import SeaweedServer

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as scratch:
        data_dir = os.path.join(scratch, "data")
        os.makedirs(data_dir)
        local_manifest = write_shards(data_dir)
        local_uris = shard_uris(load_manifest(local_manifest), local_manifest, "train")
        local_windows = _rate(_timed(lambda: _windows_samples(local_manifest)))
        local_raw = _rate(_timed(lambda: _raw_samples(local_uris)))
        results.append(
            dict(
                name="tf.data local shards: make_dataset (parse, random windows, shuffle, batch)",
                value=local_windows,
                unit="samples/s",
                baseline_name="local raw TFRecordDataset read (no parse)",
                baseline_value=local_raw,
                target=2_000_000,
                note=f"{SHARDS} shards x {RECORDS_PER_SHARD} records x {RECORD_SAMPLES} samples, window {WINDOW_LENGTH}, "
                f"batch {BATCH_SIZE}; target >= 100x a small-WaveNet step (8.3k samples/s, plain Keras)",
            )
        )

        saved_env = dict(os.environ)
        server = SeaweedServer(os.path.join(scratch, "s3"), bucket="bench")
        try:
            server.start()
            os.environ.update(server.env())
            prefix = f"s3://{server.bucket}/dataset"
            storage.sync_dir_up(data_dir, prefix)
            remote_manifest = f"{prefix}/manifest.json"
            remote_uris = shard_uris(load_manifest(remote_manifest), remote_manifest, "train")
            remote_windows = _rate(_timed(lambda: _windows_samples(remote_manifest)))
            remote_raw = _rate(_timed(lambda: _raw_samples(remote_uris)))
            download = _rate(_timed(lambda: _download_samples(remote_uris)))
        finally:
            server.stop()
            os.environ.clear()
            os.environ.update(saved_env)
        results.append(
            dict(
                name="tf.data SeaweedFS loopback: make_dataset (minio stream, CRC-checked)",
                value=remote_windows,
                unit="samples/s",
                baseline_name="tf.data local shards: make_dataset",
                baseline_value=local_windows,
                target=10_000_000,
                note="target >= 10 M samples/s; 2 shared cores run the server and the reader",
            )
        )
        results.append(
            dict(
                name="SeaweedFS loopback: raw record stream (minio, CRC-checked, no parse)",
                value=remote_raw,
                unit="samples/s",
                baseline_name="storage.read_bytes of the same shards (plain download)",
                baseline_value=download,
                note="bytes = samples (uint8 mu-law)",
            )
        )
    return results


if __name__ == "__main__":
    for result in run():
        print(json.dumps(result))
