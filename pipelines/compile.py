"""`python -m pipelines.compile --image IMAGE:TAG [...]` (what `make compile` runs): the pipeline YAML for a cluster."""

from __future__ import annotations

import argparse
import os

from kfp import compiler

from pipelines.waveforms_pipeline import GPU_POOL_SELECTORS, PipelineOptions, build_pipeline


def compile_pipeline(options: PipelineOptions, output: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), package_path=output)
    return output


def main(argv: list[str] | None = None) -> int:
    defaults = PipelineOptions(image="unused:0")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", required=True, help="project image with an immutable tag (version-gitsha)")
    parser.add_argument("--gpu-image", default="", help="image of the GPU steps (default: IMAGE-gpu)")
    parser.add_argument("--output", default="build/waveforms_pipeline.yaml")
    parser.add_argument("--convert-shards", type=int, default=defaults.convert_shards)
    parser.add_argument("--tuning", choices=("katib", "local", "off"), default=defaults.tuning)
    parser.add_argument("--gpu-count", type=int, default=defaults.gpu_count, help="GPUs per model step (0: CPU only)")
    parser.add_argument(
        "--gpu-pool",
        choices=sorted(GPU_POOL_SELECTORS),
        default=defaults.gpu_pool,
        help="which node-selector label picks the GPU pool",
    )
    parser.add_argument(
        "--gpu-pool-value",
        default=defaults.gpu_pool_value,
        help="that label's value: GKE accelerator (nvidia-l4), Karpenter NodePool (gpu), or true",
    )
    parser.add_argument("--storage-secret", default=defaults.storage_secret)
    parser.add_argument("--s3-endpoint", default=defaults.s3_endpoint)
    args = parser.parse_args(argv)
    options = PipelineOptions(
        image=args.image,
        gpu_image=args.gpu_image,
        convert_shards=args.convert_shards,
        tuning=args.tuning,
        gpu_count=args.gpu_count,
        gpu_pool=args.gpu_pool,
        gpu_pool_value=args.gpu_pool_value,
        storage_secret=args.storage_secret,
        s3_endpoint=args.s3_endpoint,
    )
    path = compile_pipeline(options, args.output)
    print(f"compiled {path} (image {args.image}, tuning {args.tuning}, {args.convert_shards} convert shards)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
