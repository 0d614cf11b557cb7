"""The commands of docs/dedup.md: near_dedup run step by step as SLURM array tasks through `refact-pipeline`."""
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_pipeline.cli import main
from data_pipeline.stages import STAGE_ORDER

STDLIB = Path(random.__file__).parent


@pytest.mark.slow  # ~30 s: every earlier stage runs first, and each command composes the Hydra config
def test_near_dedup_steps_as_array_tasks(tmp_path):
    src = tmp_path / "src"
    for name in ("bisect.py", "heapq.py", "random.py", "keyword.py"):
        (src / "a").mkdir(parents=True, exist_ok=True)
        (src / "a" / name).write_text((STDLIB / name).read_text())
    (src / "b").mkdir()
    near = (STDLIB / "heapq.py").read_text().replace("def heappush(", "def heap_push(", 1)
    (src / "b" / "heapq_fork.py").write_text(near)
    (src / "b" / "tiny.py").write_text("x = 1\n")  # no 5-gram: kept, not clustered
    out = tmp_path / "out"
    common = [f"input={src}", f"output={out}", "workers=1", "progress=false", "license.allow_unknown=true",
              "near_dedup.bucket_partitions=2"]
    for stage in STAGE_ORDER[: STAGE_ORDER.index("near_dedup")]:
        assert main(common + [f"stage={stage}"]) == 0
    # One array job per step; every task runs `task=i n_tasks=N` with the same command line.
    for step in ("signatures", "buckets", "clusters", "filter"):
        for task in range(2):
            assert main(common + ["stage=near_dedup", f"step={step}", f"task={task}", "n_tasks=2"]) == 0
    assert main(common + ["stage=near_dedup"]) == 0  # all steps done: writes the stage's stats and DIR/stats.json
    dropped = [r for p in sorted((out / "dropped").glob("near_dedup-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert [r["path"] for r in dropped] == ["b/heapq_fork.py"]
    assert dropped[0]["reason"].startswith("near_duplicate_of:") and dropped[0]["reason"].endswith("a/heapq.py")
    stats = json.loads((out / "stats.json").read_text())
    near = next(s for s in stats["stages"] if s["stage"] == "near_dedup")
    assert near["dropped"] == {"near_duplicate": 1}
    assert near["extra"]["no_shingles"] == 1
    assert near["extra"]["duplicate_clusters"]["size_histogram"] == {"2": 1}
