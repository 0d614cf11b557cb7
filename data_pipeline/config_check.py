"""Typed config sections from plain dicts: one place that refuses unknown keys, naming them and the valid ones."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """`cls(**values)` for a dataclass `cls`; a key that is not a field stops with a message naming it."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    return cls(**values)
