"""The pipeline: the compiled YAML a cluster gets (tasks, images, GPUs, Secrets, retries, caching, timeouts, no
credentials), and the demo running end to end under kfp.local."""

import glob
import json
import os
import re
from html import escape

import numpy as np
import pytest
import yaml
from audio_fixtures import encode, sine

from pipelines.compile import compile_pipeline
from pipelines.compile import main as compile_main
from pipelines.run_local import run_demo
from pipelines.waveforms_pipeline import PipelineOptions
from waveforms import audio, audio_checks
from waveforms.generate import MIN_P, PARTICLES, SHARPEN, TEMPERATURE

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
        "choose-corners",
    }
    # corners are checked right after ingest: conversion's merge (and so all training) waits for them
    assert set(tasks["merge-dataset"]["dependentTasks"]) == {"convert", "convert-2", "convert-3", "choose-corners"}
    shards = sorted(
        tasks[t]["inputs"]["parameters"]["shard_index"]["runtimeValue"]["constant"]
        for t in ("convert", "convert-2", "convert-3")
    )
    assert shards == [0, 1, 2]
    # on a cluster data goes under the run's unique id (the local demo names its folder after the run instead)
    run_id = tasks["convert"]["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"
    assert tasks["train"]["inputs"]["parameters"]["tuned"]["taskOutputParameter"]["producerTask"] == "tune"
    assert tasks["generate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train"
    for space in ("soundspace", "soundspace-2"):
        assert tasks[space]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-2"
        assert tasks[space]["inputs"]["artifacts"]["corners"]["taskOutputArtifact"]["producerTask"] == "choose-corners"
    # the corners are run parameters, empty by default (the first genres of whatever was ingested)
    parameters = pipeline["root"]["inputDefinitions"]["parameters"]
    assert (
        parameters["soundspace_corners_2"]["defaultValue"] == []
        and parameters["soundspace_corners_4"]["parameterType"] == "LIST"
    )
    # the sampler's settings are run parameters with the CLI's defaults, handed to the generate step as they are
    for name, default in (("temperature", TEMPERATURE), ("min_p", MIN_P), ("particles", PARTICLES),
                          ("sharpen", SHARPEN)):  # fmt: skip
        assert parameters[name]["defaultValue"] == default, name
        assert tasks["generate"]["inputs"]["parameters"][name]["componentInputParameter"] == name
    assert parameters["particles"]["parameterType"] == "NUMBER_INTEGER"


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
    for task in NETWORK_STEPS + ("dataset-report", "choose-corners"):
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


def _music_folder(root):
    """A small collection the way people keep one: mp3/flac/ogg in genre folders with spaces and apostrophes."""
    songs = {
        ("Rock 'n' Roll", "01 Don't Stop.mp3"): 220.0,
        ("Rock 'n' Roll", "02 Johnny B. Goode.ogg"): 247.0,
        ("Jazz & Blues", "01 So What.flac"): 330.0,
        ("Jazz & Blues", "02 Blue in Green.mp3"): 294.0,
        ("Big Band", "01 In the Mood.ogg"): 392.0,
        ("Big Band", "02 Take the 'A' Train.flac"): 440.0,
    }
    for (genre, name), frequency in songs.items():
        (root / genre).mkdir(parents=True, exist_ok=True)
        intro = sine(frequency / 2, 16000, 0.6, 0.005)  # a near-silent intro the corners must skip
        encode(root / genre / name, np.concatenate([intro, sine(frequency, 16000, 1.4, 0.6)]), 16000)
    return root


QUICK_TRAIN = {"steps": 20, "batch_size": 2, "target_length": 2000, "checkpoint_every": 10, "eval_every": 10,
               "eval_windows": 16, "warmup_steps": 5}  # fmt: skip


@pytest.mark.integration
def test_demo_runs_on_a_music_folder_and_its_printed_pages_open_in_a_browser(tmp_path, capsys, browser):
    music = _music_folder(tmp_path / "My Music")
    run_dir = run_demo(
        str(tmp_path / "out"),
        source="dir",
        source_options={"input": str(music)},
        convert_shards=2,
        soundspace_4=("", "Blue in Green", "Rock 'n' Roll/02 Johnny B. Goode.ogg", "Big Band"),
        # the wiring and the pages are under test, not the models: a third of local_options' training, two evaluations
        wavenet_train=QUICK_TRAIN,
        autoencoder_train=QUICK_TRAIN,
        tuning_trial_steps=10,
    )
    printed = capsys.readouterr().out
    outputs = lambda task, name: glob.glob(os.path.join(run_dir, task, name))  # noqa: E731
    # quiet: a line per step and the pages, none of kfp.local's or TensorFlow's stream (that is in demo.log)
    assert len(printed.splitlines()) < 30 and "tensorflow" not in printed.lower(), printed
    assert "Executing task" in open(os.path.join(run_dir, "demo.log")).read()
    # the data folder is named after the run
    assert os.path.isdir(os.path.join(tmp_path, "out", "data", os.path.basename(run_dir), "dataset"))
    manifest = json.load(open(os.path.join(run_dir, "merge-dataset", "dataset", "manifest.json")))
    assert manifest["totals"]["songs"] == 6 and manifest["splits"]["validation"]["records"] >= 1
    assert sorted(manifest["genres"]) == ["Big Band", "Jazz & Blues", "Rock 'n' Roll"]
    for split in manifest["splits"].values():  # the artifact points at the shards, wherever they are
        assert all(os.path.isabs(shard["file"]) and os.path.exists(shard["file"]) for shard in split["shards"])
    html = open(outputs("dataset-report", "page")[0]).read()
    assert (
        html.count("<audio") == 6
        and "convert-0" in html
        and "convert-1" in html
        and "ingest" in html
        and "merge" in html
    )
    for train_task, weights in (("train", "model.keras"), ("train-2", "autoencoder.weights.h5")):
        assert outputs(train_task, "model/config.json") and outputs(train_task, f"model/{weights}")
    assert len(outputs("generate", "clips/generated-*.wav")) == 2 and outputs("generate", "clips/seed.wav")
    # every generated clip carries the audio checks' verdict, computed against the dataset's own profile
    profile = audio_checks.DataProfile.from_dict(manifest["statistics"])
    generate_page = open(outputs("generate", "page")[0]).read()
    for clip in sorted(outputs("generate", "clips/generated-*.wav")):
        verdict = audio_checks.check_clip(audio.decode(clip, 16000, normalize=False), 16000, profile).verdict
        assert f"check: {escape(verdict)}" in generate_page
    assert "Audio checks" in generate_page
    train_page = open(outputs("train", "page")[0]).read()
    assert "trigram baseline" in train_page and "Bits per sample" in train_page
    # corners from the data: the first two genres by default, the named genre / title / file for the 4 corners
    spaces = {}
    for space_task, points in (("soundspace", 5), ("soundspace-2", 9)):
        space = json.load(open(outputs(space_task, "space/manifest.json")[0]))
        assert len(space["points"]) == points and len(outputs(space_task, "space/*.wav")) == points
        assert all(point["check"] for point in space["points"]) and space["checks"]["clips"] == points
        spaces[space_task] = [files[0] for files in space["corners"].values()]
    assert spaces["soundspace"] == ["W Big Band - 01 In the Mood.wav", "E Jazz & Blues - 01 So What.wav"]
    assert spaces["soundspace-2"][1] == "NE Jazz & Blues - 02 Blue in Green.wav"
    assert spaces["soundspace-2"][2] == "SW Rock 'n' Roll - 02 Johnny B. Goode.wav"
    corners = json.load(open(outputs("choose-corners", "corners/4/corners.json")[0]))["corners"]
    assert all(corner["start_seconds"] >= 0.5 for corner in corners)  # the loud part, not the quiet intro

    # every printed page opens as a page (file://, not set_content), titles tell them apart, audio plays
    pages = re.findall(r"file://(\S+)", printed)
    index = pages.pop()
    assert index.endswith("index.html") and len(pages) == 6
    assert [os.path.basename(os.path.dirname(p)) for p in pages] == [
        "dataset-report", "train", "generate", "train-2", "soundspace", "soundspace-2"]  # fmt: skip
    titles = []
    for path in [index, *pages]:
        tab = browser.new_page()
        problems = []
        tab.on("pageerror", lambda error: problems.append(str(error)))  # noqa: B023
        tab.goto(f"file://{path}")
        titles.append(tab.title())
        assert tab.locator("h1").count() == 1 and not problems, (path, problems)
        if path == index:
            assert "train-2" in tab.locator("table").last.inner_text()  # how long each step took
            links = tab.locator("a").evaluate_all("all => all.map(a => a.href)")
            assert sorted(link.removeprefix("file://") for link in links) == sorted(pages)
            tab.locator("audio").first.scroll_into_view_if_needed()
            tab.click("h1")  # a user gesture: browsers only play after one
            tab.locator("audio").first.evaluate("a => a.play()")
        elif "soundspace" in path:
            tab.locator(".cell").first.click()
        else:
            continue
        tab.wait_for_timeout(800)  # `played` keeps what was heard, also after a short clip has ended
        heard = "all => all.some(a => a.played.length > 0 && a.played.end(a.played.length - 1) > 0.05)"
        assert tab.locator("audio").evaluate_all(heard), path
        tab.close()
    assert len(set(titles)) == len(titles) and all(os.path.basename(run_dir) in t for t in titles), titles
    assert "WaveNet training" in titles[2] and "Autoencoder training" in titles[4] and "4 corners" in titles[6]


def test_demo_command_line_takes_any_source_with_the_cluster_option_keys(tmp_path):
    from pipelines.run_local import build_parser, demo_settings

    synth = demo_settings(build_parser().parse_args([]))
    assert synth["source"] == "synth" and synth["source_options"] == {"count": 80, "seed": 0, "notes_per_clip": 8}
    args = build_parser().parse_args(["--source", "dir", "--input", str(tmp_path), "--corners-2", "jazz", "",
                                      "--option", "max_file_mb=20", "--genre-from", "tag"])  # fmt: skip
    folder = demo_settings(args)
    assert folder["source_options"] == {"input": str(tmp_path), "max_file_mb": 20, "genre_from": "tag"}
    assert folder["soundspace_2"] == ("jazz", "")
    fma = demo_settings(build_parser().parse_args(["--source", "fma", "--genre", "Rock", "--max-tracks", "5"]))
    assert fma["source_options"] == {"genres": ["Rock"], "max_tracks": 5}
    with pytest.raises(ValueError, match="unknown option"):
        run_demo(str(tmp_path), source="dir", source_options={"input": str(tmp_path), "folder": "x"})


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


def test_the_demo_terminal_shows_steps_and_the_reason_a_step_failed(tmp_path):
    import io

    from pipelines.run_local import _StepPrinter

    terminal = io.StringIO()
    with open(tmp_path / "demo.log", "w") as log:
        printer = _StepPrinter(log, terminal, 12)
        printer.write(
            "12:00:00.000 - INFO - Executing task \x1b[96m'ingest'\x1b[0m\nI0000 00:00:17.1 1 a.cc:1] noise\n"
        )
        printer.write("    step=50 loss=5.1 val_bits=6.2\n    waveforms.corners.CornerError: corner 2: 'x' is nei")
        printer.write("ther a genre nor a song\nTask \x1b[96m'choose-corners'\x1b[0m finished with status FAILURE\n")
    lines = terminal.getvalue().splitlines()
    assert lines[0].endswith("ingest") and "[ 1/12]" in lines[0]
    assert lines[1] == "  step choose-corners failed: CornerError: corner 2: 'x' is neither a genre nor a song"
    assert len(lines) == 2 and "noise" in (tmp_path / "demo.log").read_text()
