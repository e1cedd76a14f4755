"""`convert` (one task of a static fan-out) and `merge_dataset` (joins the tasks' part manifests)."""

from kfp.dsl import Dataset, Input, Output


def convert(
    songs: Input[Dataset],
    data_root: str,
    run_id: str,
    shard_index: int,
    num_shards: int,
    sample_rate: int,
    part: Output[Dataset],
):
    """Convert every num_shards-th song to mu-law TFRecord shards under data_root/run_id/dataset."""
    import json
    import time

    from waveforms import storage
    from waveforms.convert import ConvertConfig
    from waveforms.convert import convert as run_convert

    started = time.monotonic()
    out_uri = storage.join(data_root, run_id, "dataset")
    config = ConvertConfig(sample_rate=sample_rate, shard_index=shard_index, num_shards=num_shards)
    manifest = run_convert(songs.path, out_uri, config, progress=False)
    with open(part.path, "w") as f:
        json.dump(manifest, f)
    part.metadata["stage_seconds"] = round(time.monotonic() - started, 3)
    part.metadata["songs"] = manifest["totals"]["songs"]


def merge_dataset(data_root: str, run_id: str, num_shards: int, dataset: Output[Dataset]):
    """Join the part manifests into manifest.json; the artifact is a folder holding that manifest with absolute shard
    URIs (the shards stay under data_root/run_id/dataset)."""
    import time

    from waveforms import storage
    from waveforms.manifest import merge_parts, publish_manifest

    started = time.monotonic()
    out_uri = storage.join(data_root, run_id, "dataset")
    _, tasks = merge_parts(out_uri, num_shards)
    manifest = publish_manifest(out_uri, dataset.path)
    dataset.metadata["songs"] = manifest["totals"]["songs"]
    dataset.metadata["hours"] = manifest["totals"]["hours"]
    dataset.metadata["shards_uri"] = out_uri
    dataset.metadata["convert_seconds"] = {f"convert-{t['shard_index']}": t["seconds"] for t in tasks}
    dataset.metadata["merge_seconds"] = round(time.monotonic() - started, 3)
