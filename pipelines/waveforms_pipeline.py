"""The waveforms pipeline: one factory, compile-time options, wiring only.

    ingest ─▶ convert[0..N-1] ─▶ merge_dataset ─┬─▶ dataset_report
      │        (static fan-out)       ▲         ├─▶ tune (katib | local | off) ─▶ train wavenet ─▶ generate
      └─▶ choose corners ─────────────┘         └─▶ train autoencoder ─┬─▶ soundspace (2 corners)
                      └────────────────────────────────────────────────┴─▶ soundspace (4 corners)

The same factory builds the pipeline compiled for a cluster (`make compile`: GPU pools, Secrets, retries, timeouts) and
the one `make demo` and the tests run with kfp.local (`local_options`: CPU, small sizes, local folders). Choices that
kfp.local cannot branch on at run time (tuning mode, fan-out width) are made here, at compile time.
"""

from dataclasses import dataclass, field, replace

from kfp import dsl, kubernetes

import components
from waveforms.cluster import CREDENTIAL_KEYS, CREDENTIALS_SECRET, GPU_POOL_SELECTORS, GPU_RESOURCE, GPU_TOLERATION
from waveforms.generate import MIN_P, PARTICLES, SHARPEN, TEMPERATURE  # the CLI's sampling defaults

PIPELINE_NAME = "waveforms"
# TrainConfig fields of a full run on a GPU (the WaveNet and the autoencoder alike); run parameters override them.
# Chosen from the sizing table in docs/cluster.md (section 11): about half an L4-hour (estimated) for `small`.
CLUSTER_TRAINING = {
    "steps": 100000,
    "batch_size": 16,
    "target_length": 8000,
    "checkpoint_every": 5000,
    "eval_every": 2500,
}
STORAGE_SECRET_KEYS = {key: key for key in CREDENTIAL_KEYS}  # Secret key -> environment variable


@dataclass(frozen=True)
class PipelineOptions:
    image: str  # project image with an immutable tag, e.g. ghcr.io/waveforms/waveforms:0.1.0-<sha>
    gpu_image: str = ""  # image of the GPU steps; default: image + "-gpu"
    convert_shards: int = 2  # static fan-out of `convert` (ParallelFor and fan-in do not run everywhere)
    tuning: str = "katib"  # katib | local | off
    gpu_count: int = 1  # per GPU step; 0 runs every step on CPU nodes
    gpu_pool: str = "gke"  # gke | eks | generic: which node-selector label picks the GPU pool
    gpu_pool_value: str = "nvidia-l4"  # that label's value (GKE accelerator type, Karpenter NodePool name, true)
    storage_secret: str = CREDENTIALS_SECRET  # Kubernetes Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    s3_endpoint: str = "http://minio-service.kubeflow:9000"  # not a secret; the keys come from storage_secret
    data_root: str = "minio://waveforms/data"  # shards, checkpoints, trials (a run parameter); bucket: docs/cluster.md
    source: str = "synth"
    source_options: dict = field(default_factory=lambda: {"count": 200, "seed": 0})
    sample_rate: int = 16000
    report_clips: int = 8
    wavenet_config: str = "small"
    wavenet_train: dict = field(default_factory=lambda: dict(CLUSTER_TRAINING))
    autoencoder_config: str = "default"
    autoencoder_train: dict = field(default_factory=lambda: dict(CLUSTER_TRAINING))
    tuning_trials: int = 12  # local search only; Katib's count is in the Experiment
    tuning_trial_steps: int = 2000  # training steps of each local trial
    tuning_fixed: dict = field(default_factory=dict)  # search-space parameters pinned for a local search
    katib: dict = field(default_factory=dict)  # tuning.ExperimentOptions fields (image, namespace, steps, ...)
    generate_seconds: float = 10.0
    generate_batch: int = 4
    # corners of the sound spaces (run parameters): per corner a genre, a song (id, original file name or title) or ""
    # for the next genre present; empty: the first 2 / 4 genres of the collection (waveforms/corners.py)
    soundspace_2: tuple = ()  # W, E
    soundspace_4: tuple = ()  # NW, NE, SW, SE
    soundspace_resolution_2: int = 9  # points along each side: 9 on the W-E path, 5x5 for 4 corners
    soundspace_resolution_4: int = 5
    soundspace_seconds: float = 1.0
    step_timeout_seconds: int = 6 * 3600  # any one step
    training_timeout_seconds: int = 48 * 3600  # tune and train steps
    network_retries: int = 3  # ingest/convert/merge: retried with exponential backoff
    # data_root/<run> folder: the run's unique id (cluster), or its name, which kfp.local also gives the run's folder
    run_folder: str = "id"

    def validate(self) -> None:
        if not 1 <= self.convert_shards <= 64:
            raise ValueError(f"convert_shards must be 1..64, got {self.convert_shards}")
        if self.tuning not in ("katib", "local", "off"):
            raise ValueError(f"tuning must be katib, local or off, got {self.tuning!r}")
        if self.gpu_pool not in GPU_POOL_SELECTORS:
            raise ValueError(f"gpu_pool must be one of {sorted(GPU_POOL_SELECTORS)}, got {self.gpu_pool!r}")
        if self.gpu_count < 0:
            raise ValueError(f"gpu_count must be >= 0, got {self.gpu_count}")
        if len(self.soundspace_2) not in (0, 2) or len(self.soundspace_4) not in (0, 4):
            raise ValueError("soundspace_2 names 2 corners (or none: the first genres) and soundspace_4 names 4")
        if self.run_folder not in ("id", "name"):
            raise ValueError(f"run_folder must be id or name, got {self.run_folder!r}")


def local_options(image: str, data_root: str, **overrides) -> PipelineOptions:
    """Options for kfp.local on a laptop: CPU, local folders, small sizes that finish in a few minutes on 2 cores."""
    small_train = {
        "steps": 60,
        "batch_size": 2,
        "target_length": 2000,
        "checkpoint_every": 30,
        "eval_every": 30,
        "eval_windows": 16,
        "warmup_steps": 10,
    }
    options = PipelineOptions(
        image=image,
        gpu_image=image,
        tuning="local",
        gpu_count=0,
        storage_secret="",
        data_root=data_root,
        source_options={"count": 40, "seed": 0},
        wavenet_train=small_train,
        autoencoder_train=small_train,
        tuning_trials=2,
        tuning_trial_steps=30,
        tuning_fixed={"batch_size": 2, "target_length": 2000, "layers_per_stack": 6},
        generate_seconds=1.0,
        generate_batch=2,
        soundspace_resolution_2=5,
        soundspace_resolution_4=3,
        soundspace_seconds=0.5,
        run_folder="name",
    )
    return replace(options, **overrides)


def katib_options(options: PipelineOptions) -> dict:
    """tuning.ExperimentOptions for tuning=katib: trials on the GPU image and pool, storage like the other steps."""
    derived = {
        "image": options.gpu_image or options.image + "-gpu",
        "node_selector": {GPU_POOL_SELECTORS[options.gpu_pool]: options.gpu_pool_value},
        "gpus_per_trial": max(options.gpu_count, 1),
        "s3_endpoint": options.s3_endpoint,
        "s3_use_https": options.s3_endpoint.startswith("https://"),
    }
    if options.storage_secret:
        derived["credentials_secret"] = options.storage_secret
    return {**derived, **options.katib}


def build_pipeline(options: PipelineOptions):
    options.validate()
    ops = components.build(options.image, options.gpu_image or options.image + "-gpu")

    def networked(task, timeout_seconds: int = options.step_timeout_seconds):
        """Steps that read or write object storage or the web: credentials from the Secret and a timeout."""
        if options.storage_secret:
            kubernetes.use_secret_as_env(
                task, secret_name=options.storage_secret, secret_key_to_env=STORAGE_SECRET_KEYS
            )
            task.set_env_variable("S3_ENDPOINT", options.s3_endpoint)
        kubernetes.set_timeout(task, timeout_seconds)
        return task

    def retried(task):
        task.set_retry(
            num_retries=options.network_retries,
            backoff_duration="60s",
            backoff_factor=2.0,
            backoff_max_duration="1800s",
        )
        return task

    def on_gpu(task, timeout_seconds: int):
        networked(task, timeout_seconds)
        if options.gpu_count:
            task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(options.gpu_count)
            kubernetes.add_node_selector(task, GPU_POOL_SELECTORS[options.gpu_pool], options.gpu_pool_value)
            kubernetes.add_toleration(task, **GPU_TOLERATION)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description="Songs -> mu-law TFRecords -> WaveNet -> new music and sound spaces.")
    def waveforms_pipeline(
        source: str = options.source,
        source_options: dict = options.source_options,
        data_root: str = options.data_root,
        sample_rate: int = options.sample_rate,
        report_clips: int = options.report_clips,
        wavenet_config: str = options.wavenet_config,
        wavenet_train: dict = options.wavenet_train,
        autoencoder_config: str = options.autoencoder_config,
        autoencoder_train: dict = options.autoencoder_train,
        generate_seconds: float = options.generate_seconds,
        generate_batch: int = options.generate_batch,
        temperature: float = TEMPERATURE,
        min_p: float = MIN_P,
        particles: int = PARTICLES,
        sharpen: float = SHARPEN,
        seed: int = 0,
        soundspace_corners_2: list = list(options.soundspace_2),  # noqa: B006 (KFP reads defaults from here)
        soundspace_corners_4: list = list(options.soundspace_4),  # noqa: B006
    ):
        run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER if options.run_folder == "id" else run_name
        songs = retried(networked(ops.ingest(source=source, options=source_options))).set_display_name("ingest")
        songs.set_caching_options(False)  # a re-scrape must fetch again: the cache key ignores remote content
        # corners are checked (and cut) straight after ingest, so a request the songs cannot meet fails the run before
        # conversion and training: merge_dataset waits for this step
        corners = networked(
            ops.choose_corners(
                songs=songs.outputs["songs"],
                corners_2=soundspace_corners_2,
                corners_4=soundspace_corners_4,
                seconds=options.soundspace_seconds,
                sample_rate=sample_rate,
            )
        ).set_display_name("choose corners")
        parts = [
            retried(
                networked(
                    ops.convert(
                        songs=songs.outputs["songs"],
                        data_root=data_root,
                        run_id=run_id,
                        shard_index=index,
                        num_shards=options.convert_shards,
                        sample_rate=sample_rate,
                    )
                )
            ).set_display_name(f"convert {index + 1}/{options.convert_shards}")
            for index in range(options.convert_shards)
        ]
        dataset = (
            retried(
                networked(
                    ops.merge_dataset(
                        data_root=data_root,
                        run_id=run_id,
                        num_shards=options.convert_shards,
                    )
                )
            )
            .after(*parts, corners)
            .set_display_name("merge dataset")
        )
        data = dataset.outputs["dataset"]
        networked(
            ops.dataset_report(songs=songs.outputs["songs"], dataset=data, max_clips=report_clips, run_name=run_name)
        ).set_display_name("dataset report")

        if options.tuning == "off":
            tuned = {}
        else:
            tune = ops.tune(
                dataset=data,
                mode=options.tuning,
                work_root=data_root,
                run_id=run_id,
                config=wavenet_config,
                train_options=wavenet_train,
                trial_steps=options.tuning_trial_steps,
                trials=options.tuning_trials,
                fixed=options.tuning_fixed,
                katib=katib_options(options),
            ).set_display_name(f"tune ({options.tuning})")
            # katib: this step only creates the Experiment and waits (its trials get GPUs); local: it trains here
            if options.tuning == "local":
                on_gpu(tune, options.training_timeout_seconds)
            else:
                networked(tune, options.training_timeout_seconds)
            tuned = tune.output
        wavenet = on_gpu(
            ops.train(
                dataset=data,
                work_root=data_root,
                run_id=run_id,
                model_kind="wavenet",
                config=wavenet_config,
                train_options=wavenet_train,
                tuned=tuned,
                run_name=run_name,
            ),
            options.training_timeout_seconds,
        ).set_display_name("train wavenet")
        on_gpu(
            ops.generate(
                model=wavenet.outputs["model"],
                dataset=data,
                seconds=generate_seconds,
                batch=generate_batch,
                temperature=temperature,
                min_p=min_p,
                particles=particles,
                sharpen=sharpen,
                seed=seed,
                run_name=run_name,
            ),
            options.step_timeout_seconds,
        ).set_display_name("generate")

        autoencoder = on_gpu(
            ops.train(
                dataset=data,
                work_root=data_root,
                run_id=run_id,
                model_kind="autoencoder",
                config=autoencoder_config,
                train_options=autoencoder_train,
                tuned={},
                run_name=run_name,
            ),
            options.training_timeout_seconds,
        ).set_display_name("train autoencoder")
        for corner_count, resolution in ((2, options.soundspace_resolution_2), (4, options.soundspace_resolution_4)):
            on_gpu(
                ops.soundspace(
                    model=autoencoder.outputs["model"],
                    corners=corners.outputs["corners"],
                    corner_count=corner_count,
                    resolution=resolution,
                    seconds=options.soundspace_seconds,
                    run_name=run_name,
                ),
                options.step_timeout_seconds,
            ).set_display_name(f"soundspace {corner_count} corners")

    return waveforms_pipeline
