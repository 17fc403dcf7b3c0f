"""Running the Snakemake workflow from tests: a copy of it, its command, the data it needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake_command(*args: str) -> list[str]:
    """Snakemake through this interpreter (the one with the project installed)."""
    return [sys.executable, "-m", "snakemake", *args]


def run_snakemake(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``cwd`` and capture its output (a failure is returned, not raised)."""
    return subprocess.run(
        snakemake_command(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def copy_workflow(destination: Path) -> Path:
    """The Snakefile, workflow and configurations in ``destination`` (results go there too)."""
    for name in ("Snakefile", "environment.yml"):
        shutil.copy(REPO / name, destination / name)
    for name in ("workflow", "configs"):
        shutil.copytree(REPO / name, destination / name)
    return destination


def copy_repository(destination: Path) -> Path:
    """:func:`copy_workflow` plus the packages, to run with ``PYTHONPATH=destination``."""
    copy_workflow(destination)
    for name in ("amp", "baselines", "harness"):
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(REPO / name, destination / name, ignore=ignore)
    return destination


def fashion_mnist_available() -> bool:
    """Whether Fashion-MNIST can be loaded here (``make data`` provides it)."""
    from harness.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion_mnist", subset=10, test_subset=10)
    except DatasetNotFoundError:
        return False
    return True
