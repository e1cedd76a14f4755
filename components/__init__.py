"""KFP components: thin, typed wrappers over the waveforms library, one file per component.

Each component function imports waveforms inside its body (KFP ships only the function's source to the pod) and calls
one library function. `build(image)` turns the functions into components on the project image chosen at compile time;
the image already holds kfp and waveforms, so pods never pip-install at run time (install_kfp_package=False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components import convert, generate, ingest, report, soundspace, train, tune


@dataclass(frozen=True)
class Components:
    ingest: Any
    convert: Any
    merge_dataset: Any
    dataset_report: Any
    tune: Any
    train: Any
    generate: Any
    choose_corners: Any
    soundspace: Any


def build(image: str, gpu_image: str | None = None) -> Components:
    """Components on the project image; the model steps (tune, train, generate, soundspace) on gpu_image."""
    gpu_image = gpu_image or image
    for name in (image, gpu_image):
        if not name or name.endswith(":latest") or ":" not in name.rsplit("/", 1)[-1]:
            raise ValueError(f"image {name!r} needs an immutable tag (version or git SHA), never :latest")

    def on(base_image: str):
        return lambda func: dsl.component(func, base_image=base_image, install_kfp_package=False)

    cpu, gpu = on(image), on(gpu_image)
    return Components(
        ingest=cpu(ingest.ingest),
        convert=cpu(convert.convert),
        merge_dataset=cpu(convert.merge_dataset),
        dataset_report=cpu(report.dataset_report),
        tune=gpu(tune.tune),
        train=gpu(train.train),
        generate=gpu(generate.generate),
        choose_corners=cpu(soundspace.choose_corners),
        soundspace=gpu(soundspace.soundspace),
    )
