"""The waveforms pipeline: one factory, compile-time options, wiring only.

    ingest ──▶ convert[0..N-1] (static fan-out) ──▶ merge_dataset ──▶ dataset_report

The same factory builds the pipeline compiled for a cluster (`make compile`) and the one `make demo` runs with kfp.local.
"""


from dataclasses import dataclass, field

from kfp import dsl

import components

PIPELINE_NAME = "waveforms"


@dataclass(frozen=True)
class PipelineOptions:
    image: str  # project image with an immutable tag, e.g. ghcr.io/waveforms/waveforms:0.1.0-<sha>
    convert_shards: int = 2  # static fan-out of `convert` (ParallelFor and fan-in do not run everywhere)
    data_root: str = "minio://mlpipeline/waveforms"  # default; where converted shards go (a run parameter)
    source: str = "synth"
    source_options: dict = field(default_factory=lambda: {"count": 40, "seed": 0})
    sample_rate: int = 16000
    report_clips: int = 8

    def validate(self) -> None:
        if not 1 <= self.convert_shards <= 64:
            raise ValueError(f"convert_shards must be 1..64, got {self.convert_shards}")


def build_pipeline(options: PipelineOptions):
    options.validate()
    ops = components.build(options.image)

    @dsl.pipeline(name=PIPELINE_NAME, description="Songs -> mu-law TFRecords -> WaveNet -> new music and sound spaces.")
    def waveforms_pipeline(
        source: str = options.source,
        source_options: dict = options.source_options,
        data_root: str = options.data_root,
        sample_rate: int = options.sample_rate,
        report_clips: int = options.report_clips,
    ):
        songs = ops.ingest(source=source, options=source_options).set_display_name("ingest")
        songs.set_caching_options(False)  # a re-scrape must fetch again: the cache key ignores remote content
        parts = []
        for index in range(options.convert_shards):
            part = ops.convert(
                songs=songs.outputs["songs"], data_root=data_root, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                shard_index=index, num_shards=options.convert_shards, sample_rate=sample_rate,
            ).set_display_name(f"convert {index + 1}/{options.convert_shards}")
            parts.append(part)
        dataset = ops.merge_dataset(
            data_root=data_root, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, num_shards=options.convert_shards
        ).after(*parts).set_display_name("merge dataset")
        ops.dataset_report(
            songs=songs.outputs["songs"], dataset=dataset.outputs["dataset"], max_clips=report_clips
        ).set_display_name("dataset report")

    return waveforms_pipeline
