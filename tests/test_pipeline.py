"""The pipeline: compiled YAML has the expected tasks and images; the demo runs end to end under kfp.local."""

import glob
import json
import os

import pytest
import yaml

from pipelines.compile import compile_pipeline
from pipelines.run_local import run_demo
from pipelines.waveforms_pipeline import PipelineOptions

IMAGE = "registry.example/waveforms/waveforms:0.1.0-abc123def456"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    compile_pipeline(PipelineOptions(image=IMAGE, convert_shards=3), str(path))
    return yaml.safe_load(path.read_text())


def test_compiled_pipeline_has_every_task(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert {"ingest", "convert", "convert-2", "convert-3", "merge-dataset", "dataset-report"} <= set(tasks)
    assert set(tasks["merge-dataset"]["dependentTasks"]) == {"convert", "convert-2", "convert-3"}
    shard_indexes = sorted(
        tasks[name]["inputs"]["parameters"]["shard_index"]["runtimeValue"]["constant"] for name in ("convert", "convert-2", "convert-3")
    )
    assert shard_indexes == [0, 1, 2]


def test_compiled_pipeline_runs_on_the_project_image_only(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {IMAGE}
    for executor in executors.values():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command  # pods never install at run time


def test_scraping_is_never_served_from_cache(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert tasks["ingest"]["cachingOptions"] == {}
    assert tasks["convert"]["cachingOptions"] == {"enableCache": True}


def test_mutable_image_tags_are_refused(tmp_path):
    for image in ("waveforms/waveforms:latest", "waveforms/waveforms"):
        with pytest.raises(ValueError, match="immutable tag"):
            compile_pipeline(PipelineOptions(image=image), str(tmp_path / "p.yaml"))


def test_demo_pipeline_runs_locally(tmp_path):
    run_dir = run_demo(str(tmp_path), clips=10, convert_shards=2)
    page = glob.glob(os.path.join(run_dir, "dataset-report", "page"))
    assert page, os.listdir(run_dir)
    html = open(page[0]).read()
    assert html.startswith("<!DOCTYPE html>") and html.count("<audio") == 8 and "data:image/png;base64," in html
    assert "convert-0" in html and "convert-1" in html and "ingest" in html  # the timing table
    assert os.path.getsize(page[0]) < 5 * 2**20
    summary = open(glob.glob(os.path.join(run_dir, "dataset-report", "summary"))[0]).read()
    assert summary.startswith("# waveforms dataset report")
    manifest = json.load(open(os.path.join(run_dir, "merge-dataset", "dataset", "manifest.json")))
    assert manifest["totals"]["songs"] == 10
    assert manifest["splits"]["validation"]["records"] >= 1
    for split in manifest["splits"].values():  # the artifact points at the shards, wherever they are
        assert all(os.path.isabs(shard["file"]) and os.path.exists(shard["file"]) for shard in split["shards"])
