"""`soundspace`: a 2- or 4-corner grid of sounds decoded by the autoencoder, with the explorer page."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


def soundspace(
    model: Input[Model],
    songs: Input[Dataset],
    corner_genres: list,
    resolution: int,
    seconds: float,
    space: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    """Corners are the first sounds of the named genres (W E, or NW NE SW SE); `space` holds the files + manifest."""
    import os
    import shutil

    from waveforms.stages import soundspace_stage

    manifest = soundspace_stage(
        model.path, songs.path, space.path, corner_genres=corner_genres, resolution=resolution, seconds=seconds
    )
    shutil.copyfile(os.path.join(space.path, "explorer.html"), page.path)
    space.metadata["points"] = len(manifest["points"])
    space.metadata["corners"] = list(corner_genres)
    for name, value in manifest["checks"].items():  # the audio checks' counts: clips, clips_ok, clips_silent, ...
        metrics.log_metric(name, value)
