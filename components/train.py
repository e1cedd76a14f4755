"""`train`: train a WaveNet or the autoencoder, resumably, into a Model artifact with its report and metrics."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


def train(
    dataset: Input[Dataset],
    work_root: str,
    run_id: str,
    model_kind: str,
    config: str,
    train_options: dict,
    tuned: dict,
    run_name: str,
    model: Output[Model],
    metrics: Output[Metrics],
    page: Output[HTML],
):
    """Checkpoints go to work_root/run_id/models/<kind>, so a retried pod resumes; the export lands in `model`."""
    from waveforms import storage
    from waveforms.stages import train_stage

    work_uri = storage.join(work_root, run_id, "models", model_kind)
    report, values = train_stage(
        dataset.path,
        work_uri,
        model.path,
        model_kind=model_kind,
        config=config,
        train_options=train_options,
        tuned=tuned,
    )
    report.title = f"{'WaveNet' if model_kind == 'wavenet' else 'Autoencoder'} training · run {run_name}"
    with open(page.path, "w") as f:
        f.write(report.html())
    for name, value in values.items():
        metrics.log_metric(name, value)
    model.metadata["model_kind"] = model_kind
    model.metadata["work_uri"] = work_uri
