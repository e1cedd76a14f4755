"""`dataset_report`: an HTML page (clips, spectrograms, timings, statistics), a Markdown summary and Metrics."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output


def dataset_report(
    songs: Input[Dataset],
    dataset: Input[Dataset],
    max_clips: int,
    run_name: str,
    page: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
):
    from waveforms.report import dataset_report as build_report

    stages = {"ingest": float(songs.metadata.get("stage_seconds", 0.0))}
    for name, seconds in sorted(dataset.metadata.get("convert_seconds", {}).items()):
        stages[name] = float(seconds)
    if "merge_seconds" in dataset.metadata:
        stages["merge"] = float(dataset.metadata["merge_seconds"])
    report, values = build_report(dataset.path, stages, max_clips=max_clips)
    report.title = f"Dataset · run {run_name}"
    with open(page.path, "w") as f:
        f.write(report.html())
    with open(summary.path, "w") as f:
        f.write(report.markdown())
    for name, value in values.items():
        metrics.log_metric(name, float(value))
