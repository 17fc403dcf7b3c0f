"""Fingerprints of the source code that determines a training job's results.

Snakemake reruns a job when its parameters, inputs or rule code change, but not when the library
code it calls changes. The pipeline's training rules therefore put a fingerprint of their source
among their ``params`` (``workflow/rules/common.smk``): after an edit of ``amp/trainer.py`` the MP
jobs rerun (``snakemake -n`` gives the reason ``params changed``) and the baseline jobs do not.

A fingerprint hashes file *contents*, never modification times, of every ``*.py`` file of the
named sources, in the order of their paths relative to the package root, so it is the same in
every checkout with the same code. Sources are named relative to the importable packages
(``"amp"``, ``"harness/runs"``, ``"harness/jobs.py"``) and found where Python imports them from,
so the fingerprint is that of the code a job actually runs.

Example:
    >>> len(fingerprint(*SOURCES["mp"]))
    16
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

__all__ = ["DIGEST_CHARS", "SOURCES", "fingerprint", "source_files"]

DIGEST_CHARS = 16
"""Hex characters of a fingerprint (64 bits of SHA-256: no accidental collisions in practice)."""

_DATA = ("harness/data", "harness/jobs.py", "harness/metrics")  # metrics: per-epoch history
_RUNS = ("harness/runs",)
_BASELINES = ("baselines", "amp/specs.py")  # the baselines build their networks from amp.specs
SOURCES: dict[str, tuple[str, ...]] = {
    "mp": ("amp", *_DATA, *_RUNS),
    "adamw": (*_BASELINES, *_DATA, *_RUNS),
    "ivon": (*_BASELINES, *_DATA, *_RUNS),
    "coverage_mp": ("amp", *_DATA, "harness/coverage.py"),
    "coverage_baseline": (
        *_BASELINES,
        *_DATA,
        "harness/coverage.py",
        "harness/coverage_baselines.py",
    ),
}
"""The sources whose code determines each kind of training job's results."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"invalid source {name!r}: no importable package of that name")
    return Path(next(iter(spec.submodule_search_locations)))


def source_files(*sources: str) -> dict[str, Path]:
    """The ``*.py`` files of ``sources``, keyed by their path relative to the package root.

    Args:
        sources: A package (``"amp"``), a folder of one (``"harness/runs"``) or a file of one
            (``"harness/jobs.py"``), each named from its top-level package.

    Returns:
        ``{"amp/trainer.py": Path(...), ...}`` sorted by key.

    Raises:
        ValueError: If a package cannot be imported or a named file or folder does not exist.
    """
    files: dict[str, Path] = {}
    for source in sources:
        package, _, rest = source.partition("/")
        root = _package_dir(package)
        path = root / rest if rest else root
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        else:
            raise ValueError(f"invalid source {source!r}: {path} does not exist")
        for file in found:
            files[f"{package}/{file.relative_to(root).as_posix()}"] = file
    return dict(sorted(files.items()))


def fingerprint(*sources: str) -> str:
    """Hash of the contents of every ``*.py`` file of ``sources`` (see :func:`source_files`).

    Returns:
        :data:`DIGEST_CHARS` lowercase hex characters; they change when a file's content, name
        or presence changes, and not when only its modification time does.
    """
    digest = hashlib.sha256()
    for name, path in source_files(*sources).items():
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:DIGEST_CHARS]
