"""`generate`: new clips from a trained WaveNet (compiled fast generation), with an HTML page and metrics."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


def generate(
    model: Input[Model],
    seconds: float,
    batch: int,
    temperature: float,
    seed: int,
    clips: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    from waveforms.stages import generate_stage

    report, values = generate_stage(
        model.path, clips.path, seconds=seconds, batch=batch, temperature=temperature, seed=seed
    )
    with open(page.path, "w") as f:
        f.write(report.html())
    for name, value in values.items():
        metrics.log_metric(name, value)
