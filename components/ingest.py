"""`ingest`: collect songs from a source (synth, fma, fma-dataset, urls, dir) into a Dataset folder."""

from kfp.dsl import Dataset, Output


def ingest(source: str, options: dict, songs: Output[Dataset]):
    """Fetch songs from `source` into the `songs` folder; `options` are waveforms.ingest.IngestOptions fields."""
    import time

    from waveforms.ingest import ingest as run_ingest
    from waveforms.ingest import summary

    started = time.monotonic()
    result = run_ingest(source, songs.path, progress=False, **options)
    songs.metadata["stage_seconds"] = round(time.monotonic() - started, 3)
    songs.metadata["source"] = source
    songs.metadata["tracks"] = result.tracks
    songs.metadata["failures"] = len(result.failures)
    print(summary(result))
