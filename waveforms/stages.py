"""The pipeline's model stages as plain library calls: tune, train, generate, soundspace.

Each function takes URIs, folders and plain values, does one stage, writes its files and returns what a KFP component
records (a Report for the HTML/Markdown artifacts and flat metrics). components/ only unpack artifacts and call these,
so every stage also runs and is tested without KFP.

Training writes to a work URI (object storage on a cluster) rather than straight into the Model artifact: a pod that is
killed and retried resumes from the checkpoints there, and the finished export is then copied into the artifact.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from waveforms import config as configuration
from waveforms import report, storage
from waveforms.generate import MIN_P, PARTICLES, SHARPEN, TEMPERATURE


def model_and_train_configs(model_kind: str, config: str, train_options: dict, tuned: dict | None = None):
    """(model config, TrainConfig) from a preset name or file, TrainConfig fields, and tuned search-space values."""
    from waveforms import tasks, train, tuning

    model_config = tasks.task_class(model_kind).load_config(config)
    # the model kind's own defaults (e.g. the autoencoder's learning rate), as the CLI applies them, under the options
    options = {**tasks.DEFAULT_TRAIN_SETTINGS.get(model_kind, {}), **train_options}
    train_config = configuration.from_dict(train.TrainConfig, options, "train_options")
    if tuned:
        model_config, train_config = tuning.apply_parameters(model_config, train_config, _typed_tuned(tuned))
    return model_config, train_config


def tune_stage(
    mode: str,
    dataset_uri: str,
    work_uri: str,
    *,
    config: str = "small",
    train_options: dict | None = None,
    trial_steps: int = 2000,
    trials: int = 3,
    seed: int = 0,
    fixed: dict | None = None,
    katib: dict | None = None,
) -> dict[str, Any]:
    """Best search-space parameters for the dataset (see tuning.tune); {} when tuning is off. Local trials train
    `trial_steps` steps each, with the final training's other options."""
    from waveforms import tuning

    trial_steps = int(trial_steps)
    options = {**(train_options or {}), "steps": trial_steps}
    for name in ("eval_every", "checkpoint_every"):  # at least one evaluation (the objective) per trial
        options[name] = min(int(options.get(name, trial_steps)), trial_steps)
    model_config, train_config = model_and_train_configs("wavenet", config, options)
    experiment = configuration.from_dict(tuning.ExperimentOptions, katib, "katib") if katib else None
    return tuning.tune(
        mode,
        dataset_uri,
        work_uri,
        model_config=model_config,
        train_config=train_config,
        trials=int(trials),
        seed=int(seed),
        fixed=_typed_tuned(fixed or {}),
        experiment=experiment,
    )


def train_stage(
    dataset_uri: str,
    work_uri: str,
    model_dir: str,
    *,
    model_kind: str = "wavenet",
    config: str = "small",
    train_options: dict | None = None,
    tuned: dict | None = None,
) -> tuple[report.Report, dict[str, float]]:
    """Train (resuming from work_uri's checkpoints), copy the exported model into model_dir, report on the run."""
    from waveforms import train

    model_config, train_config = model_and_train_configs(model_kind, config, train_options or {}, tuned)
    train.train(dataset_uri, work_uri, model_config, train_config, model_kind=model_kind, progress=False)
    storage.sync_dir_down(work_uri, model_dir)
    return report.training_report(model_dir)


def generate_stage(
    model_dir: str,
    out_dir: str,
    *,
    seconds: float = 2.0,
    batch: int = 2,
    temperature: float = TEMPERATURE,
    min_p: float = MIN_P,
    particles: int = PARTICLES,
    sharpen: float = SHARPEN,
    seed: int = 0,
    seed_dataset: str = "",
    seed_seconds: float = 0.25,
) -> tuple[report.Report, dict[str, float]]:
    """Generate `batch` clips of `seconds`, write them as WAV and mp3 into out_dir, report them. With seed_dataset, the
    model continues the first seed_seconds of a held-out clip (written to out_dir/seed.wav) instead of silence.
    temperature, min_p, particles and sharpen: the sampler's settings, as `waveforms generate` takes them."""
    from waveforms import audio, audio_checks, generate, model_store

    model = model_store.read(model_dir)  # config.json once: generation and the report get this
    sample_rate = model.sample_rate
    os.makedirs(out_dir, exist_ok=True)
    seed_audio = None
    if seed_dataset:
        seed_audio = os.path.join(out_dir, "seed.wav")
        audio.write_wav(seed_audio, held_out_clip(seed_dataset, seed_seconds), sample_rate)
    clips = generate.generate(
        model, seconds, batch=int(batch), temperature=temperature, min_p=min_p, particles=particles,
        sharpen=sharpen, seed=int(seed), seed_audio=seed_audio,
    )  # fmt: skip
    report_clips = []
    for index, clip in enumerate(clips):
        audio.write_audio_files(os.path.join(out_dir, f"generated-{index:02d}"), clip, sample_rate, ("wav", "mp3"))
        report_clips.append(report.Clip(f"generated-{index:02d}", clip, sample_rate))
    settings = {
        "seconds": seconds,
        "batch": batch,
        "temperature": temperature,
        "min_p": min_p,
        "candidates per clip": f"{particles:g}, resampled by likelihood^{sharpen}" if particles > 1 else "1",
        "seed": seed,
        "seeded from": f"first {seed_seconds} s of a held-out clip" if seed_dataset else "silence",
    }
    checks = generate.check_clips(clips, model.export)
    page = report.generation_report(report_clips, model_uri=model, settings=settings, checks=checks)
    statistics = [report.clip_statistics(clip) for clip in report_clips]
    metrics = {f"mean_{name}": float(np.mean([s[name] for s in statistics])) for name in ("rms", "spectral_flatness")}
    metrics.update(audio_checks.summary_metrics(checks))
    return page, metrics


def held_out_clip(dataset_uri: str, seconds: float):
    """The first `seconds` of the first validation record (training clips if there is no validation split)."""
    from waveforms import audio
    from waveforms.manifest import iter_segments, load_dataset_manifest

    manifest_uri, manifest = load_dataset_manifest(dataset_uri)
    split = "validation" if manifest["splits"]["validation"]["records"] else "train"
    segment = next(iter_segments(manifest, manifest_uri, split))
    codes = np.frombuffer(segment.audio, dtype=np.uint8)[: int(seconds * segment.sample_rate)]
    return audio.mu_law_decode(codes)


def corners_stage(
    songs_dir: str, out_dir: str, *, corners_2: list, corners_4: list, seconds: float, sample_rate: int = 16000
) -> dict[str, list[str]]:
    """Both sound spaces' corners (see waveforms.corners), checked together before either is written, into
    out_dir/2 and out_dir/4; -> {"2": labels, "4": labels}. The pipeline runs this right after ingest."""
    from waveforms import corners

    requests = {2: list(corners_2 or []), 4: list(corners_4 or [])}
    for count, request in requests.items():
        corners.choose_corners(songs_dir, request, count)
    return {
        str(count): [
            corners.label(c)
            for c in corners.write_corners(
                songs_dir, os.path.join(out_dir, str(count)), request, count, seconds=float(seconds),
                sample_rate=int(sample_rate),
            )
        ]
        for count, request in requests.items()
    }  # fmt: skip


def soundspace_stage(
    model_dir: str,
    corners_dir: str,
    out_dir: str,
    *,
    resolution: int,
    seconds: float = 1.0,
    weighting: str = "bilinear",
    seed: int = 0,
    run_name: str = "",
) -> dict:
    """A sound space between the corner excerpts in corners_dir (written by corners_stage); -> its manifest
    (explorer.html is in out_dir)."""
    from waveforms import corners, soundspace

    chosen = corners.read_corners(corners_dir)
    genres = ", ".join(c.genre for c in chosen)
    spec = soundspace.SoundSpaceSpec(
        corners=tuple((os.path.join(corners_dir, c.file),) for c in chosen),
        resolution=int(resolution),
        weighting=weighting,
        seconds=float(seconds),
        seed=int(seed),
        formats="wav",
        title=f"Sound space, {len(chosen)} corners ({genres})" + (f" · run {run_name}" if run_name else ""),
    )
    return soundspace.make_soundspace(model_dir, out_dir, spec).manifest


def _typed_tuned(params: dict) -> dict:
    """Search-space values typed by the configuration field each one sets (JSON may have turned 32 into 32.0)."""
    from waveforms.model import WaveNetConfig
    from waveforms.train import TrainConfig

    return configuration.coerce_fields(
        TrainConfig, configuration.coerce_fields(WaveNetConfig, params, "tuned"), "tuned"
    )
