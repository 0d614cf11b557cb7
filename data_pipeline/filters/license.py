"""Licence filter: keep code only under a permissive licence; text documents pass untouched.

SPDX expressions are evaluated: `MIT OR GPL-3.0` passes (one permissive choice suffices), `MIT AND GPL-3.0` does
not (every part must be permissive), `Apache-2.0 WITH LLVM-exception` counts as its base licence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data_pipeline.config import config_from_dict
from data_pipeline.records import Document
from data_pipeline.stage import Stage, filter_stage

DEFAULT_PERMISSIVE = ("MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Unlicense", "CC0-1.0", "Zlib",
                      "Python-2.0")


def _key(spdx: str) -> str:
    return spdx.strip().strip("()").lower()


def expression_allowed(expression: str, permissive: frozenset[str]) -> bool:
    """Evaluate an SPDX expression: OR binds looser than AND; parentheses are flattened (rare in practice)."""
    expr = re.sub(r"[()]", " ", expression)
    alternatives = re.split(r"\s+or\s+", expr, flags=re.IGNORECASE)
    for alternative in alternatives:
        parts = re.split(r"\s+and\s+", alternative, flags=re.IGNORECASE)
        bases = [re.split(r"\s+with\s+", p, flags=re.IGNORECASE)[0] for p in parts]
        if bases and all(_key(b) in permissive for b in bases if b.strip()):
            return True
    return False


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
