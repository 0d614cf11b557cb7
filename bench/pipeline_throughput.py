"""Whole-pipeline throughput (MB of input per CPU-second, one worker) and peak memory at two corpus sizes.

Corpus: real files on this machine: the Python standard library's modules (code, PSF licence via its LICENSE.txt),
the Python modules of the installed packages (code; their licences sit in dist-info, so they count as unknown and
the bench sets license.allow_unknown=true) and the packages' Markdown files (text), copied into a temporary tree in
a fixed pseudo-random order; the large corpus is a superset of the small one. Every measurement runs `refact-pipeline` in a fresh process (workers=1, and once workers=2) and reads the CPU time of
that process and its workers and the peak RSS of the largest of them, so other load on the machine changes wall time
(printed with the load average), not these numbers.

Baseline, measured in the same run: the ingest stage alone (read + decode + write Parquet), i.e. the floor any
pipeline pays. Also measured: the streaming stages alone (no dedup), whose peak memory must not grow with size.
A third corpus, the small one copied 4 times, separates corpus size from composition: a bigger corpus of distinct
files also holds bigger single files, and the peak of a streaming stage follows its largest documents.

    python bench/pipeline_throughput.py [--small-mb 32] [--large-mb 128]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zlib
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
t = time.perf_counter()
from data_pipeline.cli import main
rc = main(sys.argv[1:])
wall = time.perf_counter() - t
u, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("RESULT " + json.dumps({"rc": rc, "wall": wall, "cpu": u.ru_utime + u.ru_stime + c.ru_utime + c.ru_stime,
                              "cpu_parent": u.ru_utime + u.ru_stime,
                              "peak_kb": max(u.ru_maxrss, c.ru_maxrss), "load": os.getloadavg()[0]}))
"""

# Ingest shards of 300 files (8 at 32 MB, 32 at 128 MB), so that two workers have units to share (the default, 1000,
# makes 3 at 32 MB); the same for every run.
SHARDING = ["ingest.files_per_shard=300"]
CONFIGS = {
    "ingest only (baseline)": ["license.enabled=false", "quality.enabled=false", "english.enabled=false",
                               "topic.enabled=false", "decontam.enabled=false", "exact_dedup.enabled=false",
                               "near_dedup.enabled=false"],
    "streaming stages (no dedup)": ["exact_dedup.enabled=false", "near_dedup.enabled=false"],
    "whole pipeline": [],
    "whole pipeline, English filter on text only": ["english.check_code_comments=false"],
    "whole pipeline, workers=2": ["workers=2"],
}


def candidate_files() -> list[tuple[Path, Path]]:
    """(source file, relative destination) pairs: stdlib modules, then packages' Markdown, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    skip = {"test", "tests", "idlelib", "site-packages", "__pycache__", "lib2to3"}
    code = sorted(p for p in stdlib.rglob("*.py") if not skip & set(p.relative_to(stdlib).parts))
    packages = sorted(p for p in site.rglob("*.py") if not skip & set(p.relative_to(site).parts))
    text = sorted(site.rglob("*.md"))
    out = [(p, Path("stdlib") / p.relative_to(stdlib)) for p in code]
    out += [(p, Path("packages") / p.relative_to(site)) for p in packages + text]
    # interleave code and text so that both sizes hold both kinds in the same proportion
    return sorted(out, key=lambda pair: zlib.crc32(str(pair[1]).encode()))


def build_corpus(root: Path, target_bytes: int, files: list[tuple[Path, Path]]) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (root / "stdlib").mkdir(parents=True)
    shutil.copy(stdlib / "LICENSE.txt", root / "stdlib" / "LICENSE.txt")
    total = 0
    for src, rel in files:
        if total >= target_bytes:
            break
        try:
            data = src.read_bytes()
        except OSError:
            continue
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)
        total += len(data)
    return total


def measure(corpus: Path, out: Path, extra: list[str]) -> dict:
    args = [f"input={corpus}", f"output={out}", "workers=1", "progress=false", "license.allow_unknown=true",
            *SHARDING, *extra]
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"pipeline run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(line[len("RESULT "):])
    stats = json.loads((out / "stats.json").read_text())
    result["kept"] = stats["output"]["documents"]
    result["stage_cpu"] = {s["stage"]: sum(s["extra"].get("cpu_seconds", {}).values()) for s in stats["stages"]}
    result["docs_in"] = stats["input"]["documents"]
    result["unit_makespan_2"] = unit_makespan(out, 2)
    shutil.rmtree(out)
    return result


def unit_makespan(out: Path, workers: int) -> float:
    """CPU seconds of the units on the critical path when `workers` idle cores take them in order (each unit to the
    first free worker, as the executor's pool does), summed over the steps: with the serial CPU of the parent
    process, what the wall time would be on an idle machine. Stages run as one streamed pass (they have no
    documents of their own) are one job per unit with the stage that ends the chain."""
    jobs: dict[tuple[str, str], dict[str, float]] = {}
    chained: list[Path] = []
    for stage_dir in sorted((out / "stages").iterdir()):
        if not (stage_dir / "documents").exists() and (stage_dir / "stats" / "filter").exists():
            chained.append(stage_dir)
            continue
        for member in [*chained, stage_dir]:
            for path in (member / "stats").glob("*/*.json"):
                cpu = sum(json.loads(path.read_text())["extra"].get("cpu_seconds", {}).values())
                units = jobs.setdefault((stage_dir.name, path.parent.name), {})
                units[path.stem] = units.get(path.stem, 0.0) + cpu
        chained = []
    total = 0.0
    for units in jobs.values():
        if len(units) < 2:
            continue  # a single unit runs in the parent process: its CPU is the parent's
        free = [0.0] * workers
        for unit in sorted(units):
            free[free.index(min(free))] += units[unit]
        total += max(free)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-mb", type=float, default=32)
    parser.add_argument("--large-mb", type=float, default=128)
    args = parser.parse_args()
    files = candidate_files()
    rows = []
    by_size: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mb in (("small", args.small_mb), ("large", args.large_mb), ("small x4", None)):
            corpus = Path(tmp) / f"corpus-{label.replace(' ', '')}"
            if mb is None:  # the small corpus, four times, under different directory names
                for i in range(4):
                    shutil.copytree(Path(tmp) / "corpus-small", corpus / f"copy{i}")
                nbytes = 4 * by_size["small"]
            else:
                nbytes = build_corpus(corpus, int(mb * 1e6), files)
                by_size[label] = nbytes
            configs = CONFIGS if mb is not None else {k: v for k, v in CONFIGS.items() if "streaming" in k}
            for name, extra in configs.items():
                r = measure(corpus, Path(tmp) / "out", extra)
                r.update(size=label, mb=nbytes / 1e6, config=name)
                rows.append(r)
                print(f"{label:8s} {nbytes / 1e6:6.1f} MB  {name:28s}  {r['docs_in']:6d} docs in, {r['kept']:6d} kept  "
                      f"cpu {r['cpu']:6.1f} s  wall {r['wall']:6.1f} s  "
                      f"{nbytes / 1e6 / r['cpu']:5.2f} MB/s per core  peak {r['peak_kb'] / 1024:6.0f} MiB  "
                      f"load {r['load']:.1f}", flush=True)
    by = {(r["size"], r["config"]): r for r in rows}
    print()
    for size in ("small", "large"):
        whole = by[(size, "whole pipeline")]
        print(f"{size}: CPU seconds per stage (whole pipeline): "
              + ", ".join(f"{k} {v:.1f}" for k, v in whole["stage_cpu"].items()))
    for size in ("small", "large"):
        base, whole = by[(size, "ingest only (baseline)")], by[(size, "whole pipeline")]
        print(f"{size}: whole pipeline {whole['mb'] / whole['cpu']:.2f} MB/s per core = "
              f"{base['cpu'] / whole['cpu']:.2f}x the ingest-only baseline ({base['mb'] / base['cpu']:.2f} MB/s)")
    for size in ("small", "large"):
        one, two = by[(size, "whole pipeline")], by[(size, "whole pipeline, workers=2")]
        print(f"{size}: workers=2 vs 1: wall {one['wall']:.1f} s -> {two['wall']:.1f} s = "
              f"{one['wall'] / two['wall']:.2f}x (CPU {one['cpu']:.1f} s -> {two['cpu']:.1f} s, workers included; "
              f"load average {two['load']:.1f} on {os.cpu_count()} cores: others' load lowers this ratio)")
        idle_two = two["cpu_parent"] + two["unit_makespan_2"]
        print(f"{size}: on an idle 2-core box (parent CPU {two['cpu_parent']:.1f} s + the units' critical path "
              f"{two['unit_makespan_2']:.1f} s = {idle_two:.1f} s, vs {one['cpu']:.1f} s of CPU for one worker): "
              f"{one['cpu'] / idle_two:.2f}x")
    print("(process CPU includes about 0.7 s of imports and start-up per run)")
    for size in ("large", "small x4"):
        for name in CONFIGS:
            if (size, name) not in by:
                continue
            s, l = by[("small", name)], by[(size, name)]
            print(f"peak memory {name}: {s['peak_kb'] / 1024:.0f} MiB at {s['mb']:.0f} MB -> {l['peak_kb'] / 1024:.0f} "
                  f"MiB at {l['mb']:.0f} MB {size} (x{l['peak_kb'] / s['peak_kb']:.2f} for x{l['mb'] / s['mb']:.1f} data)")


if __name__ == "__main__":
    main()
