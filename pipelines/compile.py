"""`python -m pipelines.compile --image IMAGE:TAG --output build/waveforms_pipeline.yaml` (what `make compile` runs)."""

from __future__ import annotations

import argparse
import os

from kfp import compiler

from pipelines.waveforms_pipeline import PipelineOptions, build_pipeline


def compile_pipeline(options: PipelineOptions, output: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    compiler.Compiler().compile(build_pipeline(options), package_path=output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", required=True, help="project image with an immutable tag")
    parser.add_argument("--output", default="build/waveforms_pipeline.yaml")
    parser.add_argument("--convert-shards", type=int, default=PipelineOptions.convert_shards)
    args = parser.parse_args(argv)
    path = compile_pipeline(PipelineOptions(image=args.image, convert_shards=args.convert_shards), args.output)
    print(f"compiled {path} (image {args.image})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
