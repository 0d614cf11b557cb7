#!/usr/bin/env python3
"""A small real distributed program for testing the launchers without the trainer: every rank joins the
process group (gloo), all-reduces its rank, writes what it saw to OUT/rank-<r>.json and, when it gets SIGUSR1,
writes OUT/signal-<r> and exits 0 like a trainer that has checkpointed. Arguments are KEY=VALUE (Hydra style)."""
import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:])
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    stop = {"flag": False}
    signal.signal(signal.SIGUSR1, lambda *_: stop.update(flag=True))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank)])
    dist.all_reduce(total)
    (out / f"rank-{rank}.json").write_text(json.dumps({
        "rank": rank, "world": world, "sum": total.item(), "args": sys.argv[1:],
        "omp_threads": os.environ.get("OMP_NUM_THREADS"), "restart": os.environ.get("SLURM_RESTART_COUNT"),
    }))
    print(f"rank {rank}/{world} all_reduce sum {total.item()}", flush=True)
    deadline = time.monotonic() + float(args.get("wait_s", 0))
    while time.monotonic() < deadline and not stop["flag"]:
        time.sleep(0.1)
    if stop["flag"]:
        (out / f"signal-{rank}").write_text("SIGUSR1")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
