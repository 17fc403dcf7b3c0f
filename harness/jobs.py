"""Job helpers for the workflow scripts: set-up, data per method, resumable training state.

The Snakemake scripts in ``workflow/scripts/`` unpack ``snakemake.*`` and call these functions,
so that everything with logic in it lives in the library and is tested there:

- :func:`start_job` sends logging, warnings and progress output to the rule's log file and sets
  the number of PyTorch threads to the rule's ``threads`` (two jobs with two threads each on a
  two-core machine run several times slower than two jobs with one thread each).
- :func:`load_inputs` loads a data set the way one method wants it (normalisation, dtype) plus
  its out-of-distribution inputs.
- :func:`predict_eval_sets` predicts a trained run's extra evaluation sets (shifted test images,
  more OOD sets; :mod:`harness.eval_sets`) from the model file its training job left.
- :func:`resumable_state` / :func:`finish_state` keep a training checkpoint outside the rule's
  declared outputs (Snakemake deletes the outputs of a failed job), guarded by the run's identity
  so that a changed configuration never resumes a stale run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from amp.io import identity_differences, write_json
from amp.runtime import resolve_dtype
from harness.data import (
    DEFAULT_OOD_NORMALIZATION,
    Dataset,
    describe,
    load_dataset,
    load_ood,
    ood_normalization_of,
)
from harness.eval_sets import SetPredictions, SetsConfig, build_eval_sets, predict_sets
from harness.runs.restore import load_predictor

__all__ = [
    "data_settings",
    "describe_inputs",
    "drop_null_ood",
    "experiment_epochs",
    "predict_eval_sets",
    "run_settings",
    "sets_config",
    "train_coverage_method",
    "finish_state",
    "load_inputs",
    "resumable_state",
    "start_job",
]

_IDENTITY_FILE = "identity.json"
_CHECKPOINT_FILE = "checkpoint.pt"


def data_settings(config: dict[str, Any], method: str, dataset: str) -> dict[str, str]:
    """How ``method`` loads ``dataset`` under a (schema-validated) pipeline configuration.

    Returns:
        The keyword arguments ``normalization``, ``dtype`` and ``ood_normalization`` of
        :func:`load_inputs`.
    """
    section = config["methods"][method]
    return {
        "normalization": section["normalization"],
        "dtype": section["dtype"],
        "ood_normalization": ood_normalization_of(
            config["experiments"][dataset].get("ood"), method
        ),
    }


def drop_null_ood(config: dict[str, Any]) -> dict[str, Any]:
    """Remove ``ood: null`` from every experiment of ``config`` (in place): null means none.

    Snakemake's schema validation, which fills in the defaults, cannot descend into a null
    mapping; an absent ``ood`` means the same and validates.
    """
    for experiment in (config.get("experiments") or {}).values():
        if isinstance(experiment, dict) and "ood" in experiment and experiment["ood"] is None:
            del experiment["ood"]
    return config


def experiment_epochs(config: dict[str, Any], dataset: str | None) -> int:
    """Epochs of ``dataset``'s runs: the experiment's ``epochs``, else ``training.epochs``."""
    experiment = config["experiments"].get(dataset, {}) if dataset else {}
    return experiment.get("epochs") or config["training"]["epochs"]


def run_settings(
    config: dict[str, Any], method: str, seed: int, dataset: str | None = None
) -> dict[str, Any]:
    """Keyword arguments of :class:`harness.runs.mp.MPConfig` / ``BaselineConfig`` of one run.

    Args:
        config: The pipeline configuration, validated (the schema's defaults filled in).
        method: ``mp``, ``adamw`` or ``ivon``.
        seed: The run's seed.
        dataset: The run's experiment (its ``epochs`` override ``training.epochs``).
    """
    section = {k: v for k, v in config["methods"][method].items() if k != "normalization"}
    training = config["training"]
    return {
        **section,
        "epochs": experiment_epochs(config, dataset),
        "batch_size": training["batch_size"],
        "evaluate_every_epoch": training["evaluate_every_epoch"],
        "device": config["device"],
        "seed": int(seed),
    }


def start_job(log_path: str | os.PathLike, threads: int = 1) -> logging.Logger:
    """Route this process's diagnostics to ``log_path`` and set PyTorch's thread count.

    Args:
        log_path: The rule's ``log`` file; logging, ``stderr`` and ``stdout`` (progress bars,
            warnings, tracebacks) are appended to it.
        threads: The rule's ``threads``; used for intra-op and inter-op parallelism.

    Returns:
        A logger for the script.

    Raises:
        ValueError: If ``threads`` is not a positive integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"invalid threads: {threads!r} (must be a positive integer)")
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the process
    sys.stderr = sys.stdout = stream
    logging.basicConfig(
        stream=stream,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel region
        torch.set_num_interop_threads(threads)
    logger = logging.getLogger("amp.workflow")
    logger.info("torch %s, %d thread(s), pid %d", torch.__version__, threads, os.getpid())
    return logger


def load_inputs(
    dataset: str,
    experiment: dict[str, Any],
    data: dict[str, Any],
    *,
    normalization: str,
    dtype: str,
    ood_normalization: str = DEFAULT_OOD_NORMALIZATION,
) -> tuple[Dataset, torch.Tensor | None]:
    """Load an experiment's data set and OOD inputs prepared for one method.

    Args:
        dataset: Data set name (:data:`harness.data.DATASETS`).
        experiment: The experiment's configuration: ``subset``, ``test_subset``,
            ``subset_seed`` and ``ood`` (``None`` or a mapping with ``name`` and ``subset``).
        data: The ``data`` configuration: ``root`` and ``download``.
        normalization: ``"global"``, ``"per_channel"`` or ``"none"``.
        dtype: ``"float32"`` or ``"float64"``.
        ood_normalization: ``"reference"``, ``"own"`` or ``"none"`` (:func:`harness.data.load_ood`).

    Returns:
        The data set and the OOD inputs (``None`` when the experiment has no OOD set).

    Raises:
        ValueError: On an unknown dtype (other errors come from :mod:`harness.data`).
    """
    torch_dtype = resolve_dtype(dtype)
    loaded = load_dataset(
        dataset,
        root=data.get("root"),
        subset=experiment.get("subset"),
        test_subset=experiment.get("test_subset"),
        seed=experiment.get("subset_seed"),
        normalization=normalization,
        download=bool(data.get("download", False)),
        dtype=torch_dtype,
    )
    ood = experiment.get("ood")
    if not ood:
        return loaded, None
    x_ood = load_ood(
        ood["name"],
        loaded,
        root=data.get("root"),
        normalization=ood_normalization,
        subset=ood.get("subset"),
        download=bool(data.get("download", False)),
    )
    return loaded, x_ood


def describe_inputs(
    dataset: str,
    experiment: dict[str, Any],
    data: dict[str, Any],
    methods: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """JSON summary of a data set as every listed method sees it (sizes, classes, statistics).

    Args:
        dataset: Data set name.
        experiment: The experiment's configuration (see :func:`load_inputs`).
        data: The ``data`` configuration.
        methods: Per method the keys ``normalization``, ``dtype`` and ``ood_normalization``.

    Returns:
        ``{"dataset", "by_method": {method: describe(...) plus "ood"}}``.
    """
    out: dict[str, Any] = {"dataset": dataset, "by_method": {}}
    for method, settings in methods.items():
        loaded, x_ood = load_inputs(dataset, experiment, data, **settings)
        summary = describe(loaded)
        if x_ood is not None:
            summary["ood"] = {
                "name": experiment["ood"]["name"],
                "n": len(x_ood),
                "normalization": settings.get("ood_normalization", DEFAULT_OOD_NORMALIZATION),
                "mean": float(x_ood.double().mean()),
                "std": float(x_ood.double().std()) if x_ood.numel() > 1 else 0.0,
            }
        out["by_method"][method] = summary
    return out


def sets_config(evaluation: dict[str, Any]) -> SetsConfig:
    """The :class:`harness.eval_sets.SetsConfig` of the configuration's ``evaluation`` section.

    Args:
        evaluation: ``subset``, ``seed``, ``rotations``, ``corruptions``, ``severities`` and
            ``ood_sets`` (the schema fills in the defaults).

    Returns:
        The sets to build (empty when neither shifts nor OOD sets are asked for).
    """
    return SetsConfig(
        subset=evaluation.get("subset"),
        seed=evaluation.get("seed", 0),
        rotations=tuple(evaluation.get("rotations") or ()),
        corruptions=tuple(evaluation.get("corruptions") or ()),
        severities=tuple(evaluation.get("severities") or ()),
        ood_sets=tuple(evaluation.get("ood_sets") or ()),
    )


def predict_eval_sets(
    artifact: str,
    model_path: str | os.PathLike,
    dataset: str,
    arch: str,
    *,
    experiment: dict[str, Any],
    data: dict[str, Any],
    evaluation: dict[str, Any],
    run: dict[str, Any],
    data_settings: dict[str, Any],
) -> SetPredictions:
    """Predict one run's extra evaluation sets with the model its training job saved.

    The data set is loaded as the method saw it (:func:`load_inputs`), the sets are built from
    its test images (:func:`harness.eval_sets.build_eval_sets`; named OOD sets through
    :func:`harness.data.load_ood` with the method's OOD normalisation, skipped when not on
    disk), and the model is restored from ``model_path``
    (:func:`harness.runs.restore.load_predictor`).

    Args:
        artifact: ``mp``, ``adamw``, ``ivon`` or ``ivon_mean``.
        model_path: The training job's ``model.pt``.
        dataset: Data set name.
        arch: Architecture name.
        experiment: The experiment's configuration.
        data: The ``data`` configuration.
        evaluation: The ``evaluation`` configuration (:func:`sets_config`).
        run: The run's settings (``dtype``, ``device``, ``seed``, ``test_samples``).
        data_settings: ``normalization``, ``dtype``, ``ood_normalization`` of the method.

    Returns:
        The predictions, with the sets' descriptions, skipped sets and timings in ``metadata``.
    """
    loaded = load_dataset(
        dataset,
        root=data.get("root"),
        subset=experiment.get("subset"),
        test_subset=experiment.get("test_subset"),
        seed=experiment.get("subset_seed"),
        normalization=data_settings["normalization"],
        download=bool(data.get("download", False)),
        dtype=resolve_dtype(data_settings["dtype"]),
    )

    def load_named(name: str) -> torch.Tensor:
        return load_ood(
            name,
            loaded,
            root=data.get("root"),
            normalization=data_settings.get("ood_normalization", "reference"),
            download=bool(data.get("download", False)),
        )

    config = sets_config(evaluation)
    sets, skipped = build_eval_sets(loaded, config, load_named)
    predict = load_predictor(
        artifact,
        model_path,
        arch,
        loaded.input_shape,
        dtype=run.get("dtype", data_settings["dtype"]),
        device=run.get("device", "cpu"),
        test_samples=run.get("test_samples", 100),
        seed=run.get("seed", 0),
    )
    meta = {"method": artifact, "dataset": dataset, "arch": arch, "seed": run.get("seed")}
    return predict_sets(
        predict, sets, skipped=skipped, metadata=meta, device=run.get("device", "cpu")
    )


def resumable_state(directory: str | os.PathLike, identity: dict[str, Any]) -> Path:
    """Checkpoint path of a run, discarding a checkpoint that belongs to a different run.

    The identity (configuration, data sizes, ...) is stored beside the checkpoint; when it
    differs from ``identity``, or cannot be read, the directory is emptied (and a warning
    logged), so the run starts afresh. The checkpoint itself is not read here: a damaged one
    makes the trainer raise :class:`amp.io.CorruptFileError` naming its path.

    Args:
        directory: A directory for this run's training state (not a declared rule output).
        identity: JSON-serialisable description of the run.

    Returns:
        The checkpoint file to pass to the trainer (it may not exist yet).
    """
    directory = Path(directory)
    stored = directory / _IDENTITY_FILE
    wanted = json.loads(json.dumps(identity, sort_keys=True))
    if directory.exists():
        try:
            differ = identity_differences(wanted, json.loads(stored.read_text()))
            same, reason = not differ, f"it belongs to another configuration (differs in {differ})"
        except (OSError, ValueError, AttributeError) as err:  # not a JSON object
            same, reason = False, f"its identity file is unreadable ({type(err).__name__})"
        if not same:
            logging.getLogger(__name__).warning(
                "discarding the training state in %s: %s; the run starts afresh", directory, reason
            )
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(stored, wanted)
    return directory / _CHECKPOINT_FILE


def finish_state(checkpoint: str | os.PathLike, model_path: str | os.PathLike) -> None:
    """Move a finished run's checkpoint to its declared model file and drop the state directory.

    Args:
        checkpoint: The path returned by :func:`resumable_state`.
        model_path: The rule's ``model`` output.

    Raises:
        FileNotFoundError: If the trainer did not write the checkpoint.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}; the training did not save one")
    Path(model_path).parent.mkdir(parents=True, exist_ok=True)
    os.replace(checkpoint, model_path)
    shutil.rmtree(checkpoint.parent, ignore_errors=True)


def train_coverage_method(
    method: str, variant: str, study: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Train the coverage study's networks of one method (``mp``, ``adamw`` or ``ivon``).

    Args:
        method: The method.
        variant: ``"initialisation"`` or ``"data"``.
        study: The ``coverage`` section of the configuration.

    Returns:
        The study arrays (data, grid, truth) and ``{name: {"mean", "var"}}`` per predictive
        (AdamW also yields its deep ensembles).
    """
    from harness import coverage
    from harness.coverage_baselines import train_coverage_baseline

    config = coverage.StudyConfig(
        networks=study["networks"],
        iterations=study["iterations"],
        variant=variant,
        schedule=study["schedule"],
        group_size=study["group_size"],
        init_seed=study["seed"],
        dtype=study["dtype"],
    )
    if method == "mp":
        arrays = coverage.train_mp(config)
        predictive = {"mean": arrays.pop("mean"), "var": arrays.pop("var")}
        return arrays, {"mp": predictive}
    x, y = coverage.study_data(config)
    grid = coverage.grid_for(x)
    methods = train_coverage_baseline(
        method, x, y, grid, networks=config.networks, seed=config.init_seed
    )
    arrays = {
        "x_train": x.squeeze(-1).numpy(),
        "y_train": y.squeeze(-1).numpy(),
        "grid": grid[:, 0].numpy(),
        "truth": coverage.sine_function(grid)[:, 0].numpy(),
    }
    return arrays, methods
