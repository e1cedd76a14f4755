"""`tune`: best hyperparameters from Katib (in the cluster) or a local random search over the same space."""

from kfp.dsl import Dataset, Input


def tune(
    dataset: Input[Dataset],
    mode: str,
    work_root: str,
    run_id: str,
    config: str,
    train_options: dict,
    trial_steps: int,
    trials: int,
    fixed: dict,
    katib: dict,
) -> dict:
    """Returns the best parameters of the search space ({} when mode is "off")."""
    from waveforms import storage
    from waveforms.stages import tune_stage

    work_uri = storage.join(work_root, run_id, "tuning")
    return tune_stage(
        mode,
        dataset.path,
        work_uri,
        config=config,
        train_options=train_options,
        trial_steps=trial_steps,
        trials=trials,
        fixed=fixed,
        katib=katib or None,
    )
