"""The compiled pipeline's task graph is what it was before the library was restructured: every task, its wiring,
executor images, arguments, resources and platform settings. Only the components' embedded source may differ.

After an intended change to the graph, rewrite the reference and review its diff:
    PYTHONPATH=. python tests/test_pipeline_graph.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.compile import compile_pipeline
from pipelines.waveforms_pipeline import PipelineOptions

REFERENCE = Path(__file__).parent / "data" / "pipeline_task_graph.json"
IMAGE = "registry.example/waveforms/waveforms:0.1.0-abc123def456"
VARIANTS = {"default": {}, "shards3_local": {"convert_shards": 3, "tuning": "local"}, "katib": {"tuning": "katib"}}


def task_graph(path: Path) -> list[dict]:
    """The compiled YAML's documents without each executor's `command` (the component's embedded source)."""
    documents = list(yaml.safe_load_all(path.read_text()))
    for document in documents:
        for executor in document.get("deploymentSpec", {}).get("executors", {}).values():
            executor.get("container", {}).pop("command", None)
    return documents


def compiled_graphs(folder: Path) -> dict:
    graphs = {}
    for name, options in VARIANTS.items():
        path = folder / f"{name}.yaml"
        compile_pipeline(PipelineOptions(image=IMAGE, **options), str(path))
        graphs[name] = json.loads(json.dumps(task_graph(path), sort_keys=True))
    return graphs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_task_graph_is_unchanged(variant, tmp_path):
    graph = compiled_graphs(tmp_path)[variant]
    reference = json.loads(REFERENCE.read_text())[variant]
    for position, (document, expected) in enumerate(zip(graph, reference, strict=True)):
        for key in sorted(set(document) | set(expected)):
            assert document.get(key) == expected.get(key), f"document {position}, {key!r} differs from {REFERENCE.name}"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        REFERENCE.write_text(json.dumps(compiled_graphs(Path(folder)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}", file=sys.stderr)
