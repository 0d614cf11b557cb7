"""Configuration plumbing for every command: where the Hydra config tree is, and typed sections from plain dicts.

It lives in data_pipeline, the bottom layer, so that every command (refact-pipeline included) finds `configs/`
without importing the trainer, and every section is checked by the one function that refuses unknown keys.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def config_dir() -> str:
    """Absolute path of the `configs/` tree that the console scripts compose their configs from."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():  # editable install or running from the repository
        return str(checkout)
    # A wheel installs configs/ as the data-only package refact_train.configs (see setup.py).
    spec = importlib.util.find_spec("refact_train.configs")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("refact-train's configs/ folder is missing from this installation; reinstall the package")
    return str(Path(list(spec.submodule_search_locations)[0]))


def config_from_dict(cls: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """`cls(**values)` for a dataclass `cls`; a key that is not a field stops with a message naming it."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(known)}")
    return cls(**values)
