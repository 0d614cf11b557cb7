"""A small real corpus for the launch tests: Python standard-library files (plus one exact and one near duplicate,
so both dedup stages have work), and the options that make `refact-pipeline` keep them and shard them finely."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

STDLIB_FILES = ["textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "colorsys.py", "bisect.py", "heapq.py",
                "string.py", "getopt.py", "copy.py", "cmd.py"]

# stdlib files carry no SPDX header: keep "unknown" licences; 4 files per ingest shard -> several units per step.
PIPELINE_OPTIONS = ["license.allow_unknown=true", "tokenizer.train=true", "tokenizer.vocab_size=512",
                    "ingest.files_per_shard=4"]


def write_raw_corpus(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_FILES:
        shutil.copyfile(stdlib / name, out / name)
    shutil.copyfile(stdlib / "heapq.py", out / "heapq_copy.py")
    near = (stdlib / "bisect.py").read_text(encoding="utf-8").replace("bisect", "bsect")
    (out / "bisect_near.py").write_text(near, encoding="utf-8")
    return out


def pipeline_command() -> list[str]:
    found = shutil.which("refact-pipeline")
    return [found] if found else [sys.executable, "-m", "data_pipeline.cli"]


def run_local_pipeline(raw: Path, out: Path, workers: int = 2) -> Path:
    cmd = [*pipeline_command(), f"input={raw}", f"output={out}", *PIPELINE_OPTIONS, f"workers={workers}",
           "progress=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return out


def published_files(root: Path) -> dict[str, bytes]:
    """The pipeline's results (documents, dropped, stats, shards, tokenizer) by relative path.

    Hidden files are not results: a rerun of the pipeline currently leaves `.part-*.tmp-PID` links in documents/."""
    files = {}
    for sub in ("documents", "dropped", "shards", "tokenizer"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[str(path.relative_to(root))] = _relocated(path, root)
    files["stats.json"] = _without_timings(_relocated(root / "stats.json", root))
    return files


def _without_timings(data: bytes) -> bytes:
    """stats.json also reports how long each step took (`cpu_seconds`): everything else must match."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not k.endswith("seconds")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node
    return json.dumps(strip(json.loads(data)), indent=1, sort_keys=True).encode()


def _relocated(path: Path, root: Path) -> bytes:
    """JSON files may name files under the output directory: compare them with that directory's path taken out."""
    data = path.read_bytes()
    return data.replace(str(root).encode(), b"<OUTPUT>") if path.suffix == ".json" else data
