"""Near dedup on corner-case corpora and LSH settings (tries kept as tests; each already behaved): one document, all
identical, empty / whitespace / non-ASCII texts, bands x rows that do not divide num_perm, thresholds at and near the
ends of (0, 1)."""
import json

import pyarrow.parquet as pq
import pytest

from data_pipeline.dedup.near_dedup import build_stage
from data_pipeline.executor import run_stage
from data_pipeline.records import Document, write_documents
from data_pipeline.stage import StageContext

LONG = " ".join(f"w{i}" for i in range(50))
CYRILLIC = "Привет мир как дела у тебя сегодня и завтра тоже"


def run(tmp_path, shards: list[list[str]], cfg: dict | None = None) -> tuple[list[list[str]], dict]:
    """Kept ids per output shard and the stage's stats."""
    paths = []
    for s, texts in enumerate(shards):
        paths.append(tmp_path / "in" / f"part-{s:05d}.parquet")
        write_documents(paths[-1], [Document(f"{s}-{i}", t, "code", None, "src", None) for i, t in enumerate(texts)])
    ctx = StageContext("near_dedup", 0, tmp_path / "out", tuple(paths), cfg or {}, {})
    assert run_stage(build_stage(cfg or {}), ctx, workers=1, progress=False, log=lambda _: None).complete
    kept = [pq.read_table(p).column("id").to_pylist() for p in sorted(ctx.documents_dir.glob("part-*.parquet"))]
    return kept, json.loads(ctx.stats_path.read_text())


@pytest.mark.parametrize("shards, cfg, kept, dropped, no_shingles", [
    ([[LONG]], {}, [["0-0"]], 0, 0),  # one document
    ([], {}, [], 0, 0),  # no input shard at all
    ([[LONG] * 3, [LONG] * 2], {}, [["0-0"], []], 4, 0),  # all identical, over two shards: the first is kept
    ([["", ""], [""]], {}, [["0-0", "0-1"], ["1-0"]], 0, 3),  # empty texts: no shingles, kept, never clustered
    ([["   \n\t  ", " " * 1000, "\n" * 50]], {}, [["0-0", "0-1", "0-2"]], 0, 3),  # only whitespace
    # no ASCII word: the default split sees no words (BigCode's recipe), so copies are not clustered ...
    ([[CYRILLIC, CYRILLIC, "日本語のテキストです。" * 20, "🙂 " * 30]], {}, [["0-0", "0-1", "0-2", "0-3"]], 0, 4),
    # ... and with a Unicode-aware token_pattern (docs/dedup.md) they are
    ([[CYRILLIC, CYRILLIC]], {"token_pattern": r"\W"}, [["0-0"]], 1, 0),
    # bands x rows below num_perm, and a num_perm no band count divides: the first bands x rows values are used
    ([[LONG, LONG]], {"num_perm": 100, "bands": 7, "rows": 13}, [["0-0"]], 1, 0),
    ([[LONG, LONG]], {"num_perm": 97}, [["0-0"]], 1, 0),
    # thresholds near the ends: near 0 links these two (1 row per band), near 1 (1 band of 256 rows) does not
    ([[LONG, LONG + " x"]], {"threshold": 1e-9}, [["0-0"]], 1, 0),
    ([[LONG, LONG + " x"]], {"threshold": 0.999999}, [["0-0", "0-1"]], 0, 0),
], ids=["single", "no_shards", "identical", "empty", "whitespace", "non_ascii", "non_ascii_unicode_words",
        "bands_below_num_perm", "prime_num_perm", "threshold_near_0", "threshold_near_1"])
def test_corner_case_corpora(tmp_path, shards, cfg, kept, dropped, no_shingles):
    got, stats = run(tmp_path, shards, cfg)
    assert got == kept
    assert sum(stats["dropped"].values()) == dropped
    assert stats["extra"].get("no_shingles", 0) == no_shingles


@pytest.mark.parametrize("threshold", [0, 1, 0.0, 1.0, -0.5, 1.5, float("nan")])
def test_a_threshold_outside_0_1_is_refused_before_work(threshold):
    with pytest.raises(ValueError, match=r"near_dedup.threshold must be in \(0, 1\)"):
        build_stage({"threshold": threshold})
