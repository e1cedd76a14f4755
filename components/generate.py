"""`generate`: new clips from a trained WaveNet (compiled fast generation), with an HTML page and metrics."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


def generate(
    model: Input[Model],
    dataset: Input[Dataset],
    seconds: float,
    batch: int,
    temperature: float,
    min_p: float,
    particles: int,
    sharpen: float,
    seed: int,
    run_name: str,
    clips: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    from waveforms.stages import generate_stage

    # continue a held-out clip: a model trained on notes that start from silence would otherwise stay silent
    report, values = generate_stage(
        model.path,
        clips.path,
        seconds=seconds,
        batch=batch,
        temperature=temperature,
        min_p=min_p,
        particles=particles,
        sharpen=sharpen,
        seed=seed,
        seed_dataset=dataset.path,
    )
    report.title = f"Generated audio (WaveNet) · run {run_name}"
    with open(page.path, "w") as f:
        f.write(report.html())
    for name, value in values.items():
        metrics.log_metric(name, value)
