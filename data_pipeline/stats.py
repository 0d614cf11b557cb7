"""Per-shard and per-stage counters: documents and bytes in, kept, dropped by reason with the first few paths.

Every unit of work writes one `UnitStats` JSON file; a stage's `stats.json` is their sum, and the pipeline's
`DIR/stats.json` lists every stage's sum in run order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from data_pipeline.atomic import DamagedFile, read_json

EXAMPLES_PER_REASON = 5  # how many paths a reason keeps as examples: enough to audit, small enough to read


def stats_key(reason: str) -> str:
    """The counter a drop reason is summed under: `off_topic:0.12` counts as `off_topic` (one key, not one per score);
    `not_english:de` stays as it is. The full reason is kept in DIR/dropped/."""
    head, _, tail = reason.partition(":")
    try:
        float(tail)  # "" (no colon) is no number either
    except ValueError:
        return reason
    return head


@dataclass
class UnitStats:
    """Counters of one unit of work (usually one shard) of one stage step."""

    docs_in: int = 0
    bytes_in: int = 0
    kept: int = 0
    bytes_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_bytes: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific numbers; summed when numeric

    def add_in(self, nbytes: int) -> None:
        self.docs_in += 1
        self.bytes_in += nbytes

    def add_kept(self, nbytes: int) -> None:
        self.kept += 1
        self.bytes_kept += nbytes

    def add_dropped(self, reason: str, nbytes: int, example: str | None) -> None:
        reason = stats_key(reason)
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_bytes[reason] = self.dropped_bytes.get(reason, 0) + nbytes
        paths = self.examples.setdefault(reason, [])
        if example is not None and len(paths) < EXAMPLES_PER_REASON:
            paths.append(example)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def merge(self, other: "UnitStats") -> "UnitStats":
        for name in ("docs_in", "bytes_in", "kept", "bytes_kept"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.dropped, other.dropped), (self.dropped_bytes, other.dropped_bytes)):
            for reason, n in theirs.items():
                mine[reason] = mine.get(reason, 0) + n
        for reason, paths in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(paths[: max(0, EXAMPLES_PER_REASON - len(mine))])
        self.extra = merge_extra(self.extra, other.extra)
        return self

    def collapse(self, prefix: str, reason: str) -> "UnitStats":
        """Merge every drop reason starting with `prefix` (e.g. `near_duplicate_of:<kept id>`) into one `reason`
        counter, examples included."""
        for key in [k for k in self.dropped if k.startswith(prefix)]:
            self.dropped[reason] = self.dropped.get(reason, 0) + self.dropped.pop(key)
            self.dropped_bytes[reason] = self.dropped_bytes.get(reason, 0) + self.dropped_bytes.pop(key, 0)
            examples = self.examples.setdefault(reason, [])
            examples.extend(self.examples.pop(key, [])[: max(0, EXAMPLES_PER_REASON - len(examples))])
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dropped_total"] = self.dropped_total
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UnitStats":
        return cls(**{k: v for k, v in data.items() if k != "dropped_total"})


def merge_extra(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Numbers add up, dicts merge recursively, lists concatenate; anything else: the later value wins."""
    out = dict(a)
    for key, value in b.items():
        mine = out.get(key)
        if isinstance(value, bool) or mine is None:
            out[key] = value
        elif isinstance(value, (int, float)) and isinstance(mine, (int, float)):
            out[key] = mine + value
        elif isinstance(value, dict) and isinstance(mine, dict):
            out[key] = merge_extra(mine, value)
        elif isinstance(value, list) and isinstance(mine, list):
            out[key] = mine + value
        else:
            out[key] = value
    return out


class RedoUnits(DamagedFile):
    """Files of finished units are damaged: the units whose stats files are `paths` are to be done again."""

    def __init__(self, message: str, paths: list[Path]):
        super().__init__(message)
        self.paths = paths

    def __reduce__(self):  # raised in a worker process: pickled back with its paths
        return RedoUnits, (str(self), self.paths)


def check_stats(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """`data` (read from `path`) if it has the shape of `UnitStats.to_dict` (a stage's: also "stage"), else
    DamagedFile: a hand edit or a damaged copy must not turn into wrong sums."""
    def count(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool)

    bad = [k for k in ("docs_in", "bytes_in", "kept", "bytes_kept") if not count(data.get(k))]
    bad += [k for k in ("dropped", "dropped_bytes") if not (isinstance(data.get(k), dict)
                                                             and all(map(count, data[k].values())))]
    bad += [k for k in ("examples", "extra") if not isinstance(data.get(k), dict)]
    bad += sorted(set(data) - {f.name for f in fields(UnitStats)} - {"dropped_total", "stage"})
    if bad:
        raise DamagedFile(f"{path} is damaged: {', '.join(bad)}: missing, unknown or not of the type written there")
    return data


def read_unit_stats(path: str | Path) -> UnitStats:
    return UnitStats.from_dict(check_stats(read_json(path), path))


def sum_unit_stats(paths: list[Path]) -> UnitStats:
    """The sum of the unit stats files `paths`; RedoUnits naming every damaged one."""
    total, damaged = UnitStats(), []
    for path in sorted(paths):
        try:
            total.merge(read_unit_stats(path))
        except DamagedFile as err:
            damaged.append((path, err))
    if damaged:
        more = f" (and {len(damaged) - 1} more unit stats files)" if len(damaged) > 1 else ""
        raise RedoUnits(f"{damaged[0][1]}{more}", [path for path, _ in damaged])
    return total
