"""Sandbox throughput: the 164 canonical HumanEval solutions executed per second, all workers vs one worker.

Same programs, same process, same limits; every program must pass in both runs (checked). The load average is printed:
on a shared machine the absolute numbers follow it.
Usage: python bench/sandbox_throughput.py [--workers N (default: CPU cores)] [--problems 164]
"""
from __future__ import annotations

import argparse
import os
import time

from evals.humaneval import build_program, load_problems
from evals.sandbox import Sandbox, SandboxConfig


def measure(programs: list[str], workers: int) -> float:
    sandbox = Sandbox(SandboxConfig(workers=workers))
    start = time.perf_counter()
    results = sandbox.run_many(programs, desc=f"{workers} worker(s)")
    seconds = time.perf_counter() - start
    sandbox.close()
    failed = [i for i, r in enumerate(results) if not r.passed]
    assert not failed, f"canonical solutions failed: {failed}"
    return len(programs) / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--problems", type=int, default=164)
    args = ap.parse_args()
    problems = load_problems(limit=args.problems)
    programs = [build_program(p, p.canonical_solution) for p in problems]
    measure(programs[:4], 1)  # warm-up: page cache, first namespace set-up
    one = measure(programs, 1)
    many = measure(programs, args.workers)
    print(f"sandbox: {len(programs)} canonical HumanEval solutions; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"1 worker:   {one:.2f} programs/s")
    print(f"{args.workers} workers: {many:.2f} programs/s")
    print(f"ratio (all workers / one): {many / one:.2f}x")


if __name__ == "__main__":
    main()
