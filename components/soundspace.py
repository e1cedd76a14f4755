"""`choose_corners` (right after ingest: a corner request the songs cannot meet fails the run before any training)
and `soundspace`: a 2- or 4-corner grid of sounds decoded by the autoencoder, with the explorer page."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


def choose_corners(
    songs: Input[Dataset], corners_2: list, corners_4: list, seconds: float, sample_rate: int, corners: Output[Dataset]
):
    """Corner entries: a genre, a song (id, original file name or title) or "" (the next genre present); empty lists
    take the first 2 and 4 genres. Each corner is the loudest `seconds` of its song (corners/2 and corners/4)."""
    from waveforms.stages import corners_stage

    labels = corners_stage(
        songs.path, corners.path, corners_2=corners_2, corners_4=corners_4, seconds=seconds, sample_rate=sample_rate
    )
    corners.metadata["corners"] = labels
    for count, names in labels.items():
        print(f"{count} corners: " + " · ".join(names))


def soundspace(
    model: Input[Model],
    corners: Input[Dataset],
    corner_count: int,
    resolution: int,
    seconds: float,
    run_name: str,
    space: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    """The space between corners/<corner_count> (NW NE SW SE or W E); `space` holds the files + manifest."""
    import os
    import shutil

    from waveforms.stages import soundspace_stage

    manifest = soundspace_stage(
        model.path,
        os.path.join(corners.path, str(corner_count)),
        space.path,
        resolution=resolution,
        seconds=seconds,
        run_name=run_name,
    )
    shutil.copyfile(os.path.join(space.path, "explorer.html"), page.path)
    space.metadata["points"] = len(manifest["points"])
    space.metadata["corners"] = manifest["corners"]
    for name, value in manifest["checks"].items():  # the audio checks' counts: clips, clips_ok, clips_silent, ...
        metrics.log_metric(name, value)
