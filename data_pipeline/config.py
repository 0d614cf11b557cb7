"""Configuration plumbing for every command: where the Hydra config tree is, and typed sections from plain dicts.

It lives in data_pipeline, the bottom layer, so that every command (refact-pipeline included) finds `configs/`
without importing the trainer, and every section is checked by the one function that refuses unknown keys.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def check_at_least(section: object, where: str, **least: float) -> None:
    """ValueError naming `where.KEY` for the first field of `section` below its least value (None: not given)."""
    for key, low in least.items():
        value = getattr(section, key)
        if value is not None and value < low:
            raise ValueError(f"{where}.{key} must be >= {low}, got {value}")


class DataError(ValueError):
    """The data cannot give what the config asks (a mixture that leaves no train token, no document kept to train a
    tokenizer on): the run stops with this one line, not a traceback."""


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
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _fits(value, hints.get(key, Any)):
            raise ValueError(f"{where}.{key}: expected {_describe(hints[key])}, got {value!r}")
    return cls(**values)


# What a value from YAML or the command line may be for an annotation (Hydra gives lists for tuples, ints for floats).
_ACCEPTS = {int: int, float: (int, float), bool: bool, str: str, tuple: (list, tuple), list: (list, tuple),
            dict: dict}
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", tuple: "a list",
          list: "a list", dict: "a mapping", type(None): "null"}


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` fits the field annotation `hint`, checked one level deep; what is not listed passes (Any,
    nested dataclasses, callables: their own checks apply)."""
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    accepted = _ACCEPTS.get(origin)
    if accepted is None:
        return True
    if isinstance(value, bool) and origin is not bool:
        return False  # true/false where a number or a string is meant
    return isinstance(value, accepted)


def _describe(hint: Any) -> str:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return " or ".join(_NAMES.get(typing.get_origin(a) or a, getattr(a, "__name__", str(a))) for a in args)
