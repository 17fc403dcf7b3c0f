"""The published UCI results (``configs/uci_published.yaml``), with one sign convention.

Sources print either the test log-likelihood (``ll``, higher is better) or its negative
(``nll``); :func:`load_published` returns the log-likelihood for every source, ``ll = −nll``,
with the spread as printed (the sources do not all say whether it is a standard error or a
standard deviation over the splits).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.data.uci import UCI_SETS

__all__ = ["PublishedSource", "Value", "load_published"]


@dataclass(frozen=True)
class Value:
    """A published number: the mean and the printed spread (``None`` when none is printed)."""

    mean: float
    spread: float | None = None


@dataclass(frozen=True)
class PublishedSource:
    """One method's published results.

    Attributes:
        key: Name in the registry (``"pbp"``).
        label: Column header (``"PBP"``).
        reference: Where the numbers are printed.
        protocol: How they were obtained, in a few words.
        printed: ``"nll"`` or ``"ll"``: the sign the source prints.
        decimals: Decimals the source prints (``None``: not stated).
        results: ``{set: {"rmse": Value, "ll": Value}}``, the log-likelihood with our sign.
    """

    key: str
    label: str
    reference: str
    protocol: str
    printed: str
    decimals: int | None
    results: dict[str, dict[str, Value]]


def load_published(
    path: str | os.PathLike,
) -> tuple[dict[str, PublishedSource], list[str]]:
    """Read and check the registry.

    Args:
        path: The YAML file (``configs/uci_published.yaml``).

    Returns:
        The sources by key, and the keys of the table's published columns in order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: If an entry is malformed (the message names it).
    """
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, Mapping) or not isinstance(raw.get("sources"), Mapping):
        raise ValueError(f"{path}: expected a mapping with 'sources' (and 'table_columns')")
    sources = {key: _source(path, key, entry) for key, entry in raw["sources"].items()}
    columns = list(raw.get("table_columns") or sources)
    unknown = [c for c in columns if c not in sources]
    if unknown:
        raise ValueError(f"{path}: table_columns names unknown sources {unknown}")
    return sources, columns


def _source(path: Any, key: str, entry: Any) -> PublishedSource:
    where = f"{path}: sources.{key}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    printed = entry.get("printed")
    if printed not in ("ll", "nll"):
        raise ValueError(f"{where}.printed: {printed!r}; use 'll' or 'nll' (the sign printed)")
    decimals = entry.get("decimals")
    if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)):
        raise ValueError(f"{where}.decimals: {decimals!r}; write a whole number")
    results: dict[str, dict[str, Value]] = {}
    for name, values in (entry.get("results") or {}).items():
        if name not in UCI_SETS:
            raise ValueError(f"{where}.results: unknown data set {name!r}; known: {list(UCI_SETS)}")
        if not isinstance(values, Mapping) or set(values) != {"rmse", printed}:
            raise ValueError(f"{where}.results.{name}: give exactly 'rmse' and '{printed}'")
        ll = _value(f"{where}.results.{name}.{printed}", values[printed])
        if printed == "nll":
            ll = Value(-ll.mean, ll.spread)
        results[name] = {"rmse": _value(f"{where}.results.{name}.rmse", values["rmse"]), "ll": ll}
    return PublishedSource(
        key=key,
        label=str(entry.get("label", key)),
        reference=" ".join(str(entry.get("reference", "")).split()),
        protocol=" ".join(str(entry.get("protocol", "")).split()),
        printed=printed,
        decimals=decimals,
        results=results,
    )


def _value(where: str, raw: Any) -> Value:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        numbers = [float(raw)]
    elif isinstance(raw, list) and len(raw) == 2:
        numbers = [float(v) for v in raw]
    else:
        raise ValueError(f"{where}: {raw!r}; write a number or [mean, spread]")
    if not all(math.isfinite(v) for v in numbers) or (len(numbers) == 2 and numbers[1] < 0):
        raise ValueError(f"{where}: {raw!r} must be finite with a non-negative spread")
    return Value(*numbers)
