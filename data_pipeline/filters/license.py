"""Licence filter: keep code only under a permissive licence; text documents pass untouched.

SPDX expressions are parsed by `license-expression` (aboutcode's SPDX parser) and evaluated: `MIT OR GPL-3.0`
passes (one permissive choice suffices), `MIT AND GPL-3.0` does not (every part must be permissive), parentheses
group (`(MIT OR GPL-3.0) AND GPL-2.0` does not pass), `Apache-2.0 WITH LLVM-exception` counts as its base licence,
and an expression that does not parse does not pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from license_expression import AND, OR, ExpressionError, LicenseWithExceptionSymbol, Licensing

from data_pipeline.config import config_from_dict
from data_pipeline.records import Document
from data_pipeline.stage import Stage, filter_stage

DEFAULT_PERMISSIVE = ("MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unlicense", "CC0-1.0", "Zlib",
                      "Python-2.0")


def _key(spdx: str) -> str:
    return spdx.strip().strip("()").lower()


_LICENSING = Licensing()  # no symbol table: any id parses (LicenseRef-*, ids newer than the library)


@lru_cache(maxsize=4096)  # a corpus holds few distinct expressions
def expression_allowed(expression: str, permissive: frozenset[str]) -> bool:
    """Whether an SPDX expression grants a permissive licence (`permissive`: lower-cased ids)."""
    try:
        parsed = _LICENSING.parse(expression)
    except ExpressionError:  # `MIT OR`, unbalanced parentheses: no licence that can be read
        return False

    def allowed(node) -> bool:
        if isinstance(node, AND):
            return all(allowed(arg) for arg in node.args)
        if isinstance(node, OR):
            return any(allowed(arg) for arg in node.args)
        if isinstance(node, LicenseWithExceptionSymbol):
            node = node.license_symbol
        return _key(node.key) in permissive

    return parsed is not None and allowed(parsed)


@dataclass(frozen=True)
class LicenseKeys:
    """The `license` config section (configs/pipeline/license/default.yaml)."""

    enabled: bool = True
    permissive: Any = DEFAULT_PERMISSIVE
    allow_unknown: bool = False
    allow_unknown_sources: Any = ()
    source_licenses: Any = None


@dataclass(frozen=True)
class LicenseFilter:
    permissive: frozenset[str]  # lower-cased SPDX ids
    allow_unknown: bool = False  # keep code whose licence is unknown (everywhere)
    allow_unknown_sources: frozenset[str] = frozenset()  # ... or only from these sources
    source_licenses: tuple[tuple[str, str], ...] = ()  # (source, SPDX) for sources whose licence is known as a whole

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> "LicenseFilter":
        keys = config_from_dict(LicenseKeys, section, "license")
        return cls(
            permissive=frozenset(_key(s) for s in keys.permissive),
            allow_unknown=bool(keys.allow_unknown),
            allow_unknown_sources=frozenset(keys.allow_unknown_sources or ()),
            source_licenses=tuple(sorted((keys.source_licenses or {}).items())),
        )

    def __call__(self, doc: Document) -> str | None:
        if doc.kind != "code":
            return None
        spdx = doc.license or dict(self.source_licenses).get(doc.source)
        if not spdx:
            return None if self.allow_unknown or doc.source in self.allow_unknown_sources else "unknown"
        return None if expression_allowed(spdx, self.permissive) else f"not_permissive:{spdx}"


def build_stage(section: dict[str, Any]) -> Stage:
    return filter_stage("license", LicenseFilter.from_config, section)
