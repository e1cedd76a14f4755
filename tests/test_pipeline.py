"""The pipeline: the compiled YAML a cluster gets (tasks, images, GPUs, Secrets, retries, caching, timeouts, no
credentials), and the demo running end to end under kfp.local."""

import glob
import json
import os
from html import escape

import pytest
import yaml

from pipelines.compile import compile_pipeline
from pipelines.compile import main as compile_main
from pipelines.run_local import run_demo
from pipelines.waveforms_pipeline import PipelineOptions
from waveforms import audio, audio_checks

IMAGE = "registry.example/waveforms/waveforms:0.1.0-abc123def456"
GPU_STEPS = ("tune", "train", "train-2", "generate", "soundspace", "soundspace-2")
NETWORK_STEPS = ("ingest", "convert", "convert-2", "convert-3", "merge-dataset")


def _compile(tmp_path_factory, **options):
    path = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    compile_pipeline(PipelineOptions(image=IMAGE, **options), str(path))
    text = path.read_text()
    pipeline, platform = yaml.safe_load_all(text)
    return text, pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    return _compile(tmp_path_factory, convert_shards=3, tuning="local")


def _executor(pipeline, task):
    return pipeline["root"]["dag"]["tasks"][task]["componentRef"]["name"].replace("comp-", "exec-")


def test_every_task_is_present_and_wired(compiled):
    _, pipeline, _ = compiled
    tasks = pipeline["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "ingest",
        "convert",
        "convert-2",
        "convert-3",
        "merge-dataset",
        "dataset-report",
        "tune",
        "train",
        "train-2",
        "generate",
        "soundspace",
        "soundspace-2",
    }
    assert set(tasks["merge-dataset"]["dependentTasks"]) == {"convert", "convert-2", "convert-3"}
    shards = sorted(
        tasks[t]["inputs"]["parameters"]["shard_index"]["runtimeValue"]["constant"]
        for t in ("convert", "convert-2", "convert-3")
    )
    assert shards == [0, 1, 2]
    assert tasks["train"]["inputs"]["parameters"]["tuned"]["taskOutputParameter"]["producerTask"] == "tune"
    assert tasks["generate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train"
    for space in ("soundspace", "soundspace-2"):
        assert tasks[space]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-2"


def test_images_are_immutable_and_pods_never_pip_install(compiled):
    _, pipeline, _ = compiled
    executors = pipeline["deploymentSpec"]["executors"]
    images = {name: executor["container"]["image"] for name, executor in executors.items()}
    assert set(images.values()) == {IMAGE, IMAGE + "-gpu"}
    for task in GPU_STEPS:
        assert images[_executor(pipeline, task)] == IMAGE + "-gpu"
    for executor in executors.values():
        assert "pip install" not in " ".join(executor["container"]["command"])
        assert not executor["container"]["image"].endswith(":latest")


def test_gpu_steps_request_gpus_on_the_gpu_pool(compiled):
    _, pipeline, platform = compiled
    executors = pipeline["deploymentSpec"]["executors"]
    for task in GPU_STEPS:
        name = _executor(pipeline, task)
        resources = executors[name]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert int(resources["accelerator"]["resourceCount"]) == 1
        assert platform[name]["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in platform[name]["tolerations"]
    for task in NETWORK_STEPS + ("dataset-report",):
        name = _executor(pipeline, task)
        assert "accelerator" not in executors[name]["container"].get("resources", {})
        assert "nodeSelector" not in platform[name]


def test_storage_credentials_come_from_the_secret_only(compiled):
    text, pipeline, platform = compiled
    for name, executor in pipeline["deploymentSpec"]["executors"].items():
        secret = platform[name]["secretAsEnv"][0]
        assert secret["secretName"] == "waveforms-s3-credentials"
        assert {k["envVar"] for k in secret["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        assert env.get("S3_ENDPOINT") == "http://minio-service.kubeflow:9000"
        assert not set(env) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for parameter in pipeline["root"]["inputDefinitions"]["parameters"]:
        assert "secret" not in parameter.lower() and "key" not in parameter.lower()
    # no credential material anywhere: no AWS-style key ids, no environment secrets of this machine
    assert "AKIA" not in text
    for value in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_ACCESS_KEY_ID")):
        assert not value or value not in text


def test_retries_caching_and_timeouts(compiled):
    _, pipeline, platform = compiled
    tasks = pipeline["root"]["dag"]["tasks"]
    for task in NETWORK_STEPS:
        policy = tasks[task]["retryPolicy"]
        assert policy["maxRetryCount"] == 3 and policy["backoffFactor"] == 2.0
    assert "retryPolicy" not in tasks["train"]  # training resumes from checkpoints; a retry is the operator's call
    assert tasks["ingest"]["cachingOptions"] == {}  # scraping is never served from cache
    assert tasks["convert"]["cachingOptions"] == {"enableCache": True}
    for task in tasks:
        timeout = int(platform[_executor(pipeline, task)]["activeDeadlineSeconds"])
        assert timeout == (48 * 3600 if task in ("tune", "train", "train-2") else 6 * 3600)


def test_katib_tuning_runs_on_cpu_and_off_removes_the_step(tmp_path_factory):
    _, pipeline, platform = _compile(tmp_path_factory, tuning="katib")
    tune = _executor(pipeline, "tune")
    assert "accelerator" not in pipeline["deploymentSpec"]["executors"][tune]["container"].get("resources", {})
    assert (
        pipeline["root"]["dag"]["tasks"]["tune"]["inputs"]["parameters"]["mode"]["runtimeValue"]["constant"] == "katib"
    )
    _, pipeline, _ = _compile(tmp_path_factory, tuning="off")
    assert "tune" not in pipeline["root"]["dag"]["tasks"]


def test_eks_pool_and_cpu_only_options(tmp_path_factory):
    _, pipeline, platform = _compile(tmp_path_factory, gpu_pool="eks", gpu_pool_value="gpu", gpu_count=2)
    name = _executor(pipeline, "train")
    assert platform[name]["nodeSelector"]["labels"] == {"karpenter.sh/nodepool": "gpu"}
    assert (
        int(pipeline["deploymentSpec"]["executors"][name]["container"]["resources"]["accelerator"]["resourceCount"])
        == 2
    )
    _, pipeline, platform = _compile(tmp_path_factory, gpu_count=0)
    for executor in pipeline["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})


def test_mutable_image_tags_and_bad_options_are_refused(tmp_path):
    for image in ("waveforms/waveforms:latest", "waveforms/waveforms"):
        with pytest.raises(ValueError, match="immutable tag"):
            compile_pipeline(PipelineOptions(image=image), str(tmp_path / "p.yaml"))
    with pytest.raises(ValueError, match="tuning"):
        compile_pipeline(PipelineOptions(image=IMAGE, tuning="grid"), str(tmp_path / "p.yaml"))


def test_make_compile_entry_point(tmp_path, capsys):
    output = tmp_path / "build" / "waveforms_pipeline.yaml"
    assert compile_main(["--image", IMAGE, "--output", str(output), "--convert-shards", "4"]) == 0
    tasks = yaml.safe_load_all(output.read_text()).__next__()["root"]["dag"]["tasks"]
    assert "convert-4" in tasks and "compiled" in capsys.readouterr().out


def test_demo_pipeline_runs_locally(tmp_path):
    run_dir = run_demo(str(tmp_path), clips=10, convert_shards=2)
    outputs = lambda task, name: glob.glob(os.path.join(run_dir, task, name))  # noqa: E731
    html = open(outputs("dataset-report", "page")[0]).read()
    assert html.startswith("<!DOCTYPE html>") and html.count("<audio") == 8 and "data:image/png;base64," in html
    assert "convert-0" in html and "convert-1" in html and "ingest" in html  # the timing table
    assert os.path.getsize(outputs("dataset-report", "page")[0]) < 5 * 2**20
    manifest = json.load(open(os.path.join(run_dir, "merge-dataset", "dataset", "manifest.json")))
    assert manifest["totals"]["songs"] == 10 and manifest["splits"]["validation"]["records"] >= 1
    for split in manifest["splits"].values():  # the artifact points at the shards, wherever they are
        assert all(os.path.isabs(shard["file"]) and os.path.exists(shard["file"]) for shard in split["shards"])
    # trained models with their configuration, generated audio, both sound spaces with their explorer pages
    for train_task, weights in (("train", "model.keras"), ("train-2", "autoencoder.weights.h5")):
        assert outputs(train_task, "model/config.json") and outputs(train_task, f"model/{weights}")
        assert "<img" in open(outputs(train_task, "page")[0]).read()
    assert (
        len(outputs("generate", "clips/generated-*.wav")) == 2
        and outputs("generate", "clips/seed.wav")
        and len(outputs("generate", "clips/*.mp3")) == 2
    )
    # every generated clip carries the audio checks' verdict, computed against the dataset's own profile
    profile = audio_checks.DataProfile.from_dict(manifest["statistics"])
    generate_page = open(outputs("generate", "page")[0]).read()
    for clip in sorted(outputs("generate", "clips/generated-*.wav")):
        verdict = audio_checks.check_clip(audio.decode(clip, 16000, normalize=False), 16000, profile).verdict
        assert f"check: {escape(verdict)}" in generate_page
    assert "Audio checks" in generate_page
    train_page = open(outputs("train", "page")[0]).read()
    assert "trigram baseline" in train_page and "Bits per sample" in train_page
    for space_task, points in (("soundspace", 5), ("soundspace-2", 9)):
        space = json.load(open(outputs(space_task, "space/manifest.json")[0]))
        assert len(space["points"]) == points
        assert all(point["check"] for point in space["points"]) and space["checks"]["clips"] == points
        assert len(outputs(space_task, "space/*.wav")) == points
        assert (
            "<audio" in open(outputs(space_task, "page")[0]).read()
            or "data:audio" in open(outputs(space_task, "page")[0]).read()
        )


def test_katib_trials_use_the_gpu_image_pool_and_storage_of_the_pipeline(tmp_path_factory):
    from waveforms import tuning

    _, pipeline, _ = _compile(tmp_path_factory, tuning="katib", gpu_pool="eks", gpu_pool_value="gpu")
    katib = pipeline["root"]["dag"]["tasks"]["tune"]["inputs"]["parameters"]["katib"]["runtimeValue"]["constant"]
    assert katib["image"] == IMAGE + "-gpu" and katib["node_selector"] == {"karpenter.sh/nodepool": "gpu"}
    assert katib["credentials_secret"] == "waveforms-s3-credentials"
    options = tuning.ExperimentOptions(**{**katib, "name": "waveforms-run", "namespace": "team"})
    experiment = tuning.render_experiment(options)
    tuning.check_experiment(experiment)
    pod = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == IMAGE + "-gpu" and pod["nodeSelector"] == {"karpenter.sh/nodepool": "gpu"}


def test_the_default_data_root_is_in_the_bucket_the_cluster_guide_creates():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    default = PipelineOptions(image="registry.example/waveforms:0.1.0").data_root
    guide = (root / "docs" / "cluster.md").read_text()
    assert f"`data_root` (default `{default}`" in guide
    launcher = yaml.safe_load((root / "manifests" / "base" / "kfp-launcher.yaml").read_text())
    pipeline_root = launcher["data"]["defaultPipelineRoot"]  # minio://<bucket>/pipelines: the bucket of step 5
    assert default.split("/")[2] == pipeline_root.split("/")[2] == "waveforms"
    assert "c.make_bucket('waveforms')" in guide


def test_the_cluster_guide_sizes_the_default_run_from_the_flop_count():
    """docs/cluster.md section 11: its FLOP figures come from model.flops_per_sample and the CLUSTER_TRAINING defaults
    (change either and this fails until the table is recomputed)."""
    from pathlib import Path

    from pipelines.waveforms_pipeline import CLUSTER_TRAINING
    from waveforms.model import NAMED_CONFIGS, flops_per_sample

    guide = (Path(__file__).resolve().parent.parent / "docs" / "cluster.md").read_text()
    for name in ("small", "ibab"):
        config = NAMED_CONFIGS[name]
        row = f"| {config.receptive_field:,} | {flops_per_sample(config, training=False):,} | {flops_per_sample(config):,} |"
        assert f"| `{name}` |" in guide and row in guide, row
    options = PipelineOptions(image="registry.example/waveforms:0.1.0")
    assert options.wavenet_train == CLUSTER_TRAINING
    config = NAMED_CONFIGS[options.wavenet_config]
    steps, batch, target = (CLUSTER_TRAINING[key] for key in ("steps", "batch_size", "target_length"))
    positions = batch * (config.receptive_field + target - 1)
    per_step = positions * flops_per_sample(config)

    def short(value: float) -> str:
        return f"{value:.3e}".replace("e+", "e")

    assert f"`{options.wavenet_config}`, {steps:,} steps of batch {batch} ×\ntarget {target:,}" in guide
    assert f"{positions:,} positions and {short(per_step)} FLOPs per step, {short(per_step * steps)} FLOPs" in guide
    l4_steps_per_second = 0.10 * 121e12 / per_step  # the table's assumption: 10% of the L4's published BF16 peak
    assert f"| L4 | 30.3 / 121 | {l4_steps_per_second:.0f} | {steps / l4_steps_per_second / 3600:.2f} |" in guide
