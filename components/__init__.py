"""KFP components: thin, typed wrappers over the waveforms library, one file per component.

Each component function imports waveforms inside its body (KFP ships only the function's source to the pod) and calls
one library function. `build(image)` turns the functions into components on the project image chosen at compile time;
the image already holds kfp and waveforms, so pods never pip-install at run time (install_kfp_package=False).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components import convert, ingest, report


@dataclass(frozen=True)
class Components:
    ingest: Any
    convert: Any
    merge_dataset: Any
    dataset_report: Any


def build(image: str) -> Components:
    if not image or image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
        raise ValueError(f"image {image!r} needs an immutable tag (version or git SHA), never :latest")

    def component(func):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return Components(
        ingest=component(ingest.ingest),
        convert=component(convert.convert),
        merge_dataset=component(convert.merge_dataset),
        dataset_report=component(report.dataset_report),
    )
