"""`python -m pipelines.compile --image IMAGE:TAG [...]` (what `make compile` runs): the pipeline YAML for a cluster."""

from __future__ import annotations

import argparse
import os

from kfp import compiler

from pipelines.waveforms_pipeline import GPU_POOL_SELECTORS, PipelineOptions, build_pipeline
from waveforms.config import Option, add_options, from_options


def compile_pipeline(options: PipelineOptions, output: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), package_path=output)
    return output


# flags for PipelineOptions fields, in the order --help lists them; type and default from the field
OPTIONS = (
    Option("image", "project image with an immutable tag (version-gitsha)"),
    Option("gpu_image", "image of the GPU steps (default: IMAGE-gpu)"),
)
PLACEMENT_OPTIONS = (
    Option("convert_shards"),
    Option("tuning", choices=("katib", "local", "off")),
    Option("gpu_count", "GPUs per model step (0: CPU only)"),
    Option("gpu_pool", "which node-selector label picks the GPU pool", choices=sorted(GPU_POOL_SELECTORS)),
    Option("gpu_pool_value", "that label's value: GKE accelerator (nvidia-l4), Karpenter NodePool (gpu), or true"),
    Option("storage_secret"),
    Option("s3_endpoint"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_options(parser, PipelineOptions, OPTIONS)
    parser.add_argument("--output", default="build/waveforms_pipeline.yaml")
    add_options(parser, PipelineOptions, PLACEMENT_OPTIONS)
    args = parser.parse_args(argv)
    options = from_options(PipelineOptions, args, OPTIONS + PLACEMENT_OPTIONS)
    path = compile_pipeline(options, args.output)
    print(f"compiled {path} (image {args.image}, tuning {args.tuning}, {args.convert_shards} convert shards)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
