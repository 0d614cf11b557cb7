"""scripts/gpu_check.sh's last step: every step's output -> OUT/gpu_check.json, gpu_check.md, gpu_check.log.

Pass/fail per step (a step that timed out or crashed fails; the others are judged on their own):
  install     every REQUIRED module imports (from the box or from the carried wheels)
  tests       no failure, no error (on the CPU every test is a GPU test, so all are skipped: collection is the check)
  mfu         every requested row measured (flash may be skipped when flash-attn is absent); target: best MFU >= 50%
  train       refact-train exits 0; mean loss of the last 5 steps < 90% of the first 3; its median logged MFU after
              the early-dropout phase within --mfu-tolerance (relative) of the bench row of the same configuration
  memory      every configuration measured (on the CPU: ran; no allocator statistics there); target: LoRA fits 24 GiB
  generation  batch 1 and batch 8 measured, every row generated its tokens
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data_pipeline.atomic import write_json_atomic, write_text_atomic  # noqa: E402

VERSIONED = {"torch": "torch", "triton": "triton", "transformers": "transformers", "peft": "peft",
             "safetensors": "safetensors", "tokenizers": "tokenizers", "pyarrow": "pyarrow", "numpy": "numpy",
             "hydra": "hydra-core", "omegaconf": "omegaconf", "lion_pytorch": "lion-pytorch",
             "flash_attn": "flash-attn", "pytest": "pytest"}  # module: distribution


def load(path: Path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def machine() -> dict:
    import importlib
    import importlib.metadata

    import torch
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cuda_available": torch.cuda.is_available()}
    versions = {}
    for mod, dist in VERSIONED.items():
        try:
            importlib.import_module(mod)
            versions[dist] = importlib.metadata.version(dist)
        except Exception:  # noqa: BLE001 - absent or broken: recorded as such
            versions[dist] = None
    info["versions"] = versions
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), sm_count=p.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
        try:
            q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = q.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["nvidia_smi"] = None
    return info


def judge_tests(work: Path, mode: str) -> dict:
    try:
        root = ET.parse(work / "tests.xml").getroot()
    except (OSError, ET.ParseError) as e:
        return {"pass": False, "why": f"no junit report: {e}"}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    ok = counts["failures"] == counts["errors"] == 0 and counts["tests"] > 0
    if mode == "gpu":
        ok = ok and counts["passed"] > 0
    return {"pass": ok, **counts, "failed": failed}


def judge_mfu(rows: list[dict], expected: list[str]) -> dict:
    measured = {f"{r['backend']}/{'compiled' if r['compile'] else 'eager'}" + ("/train_config" if r.get("grad_accum", 1)
                > 1 else ""): r for r in rows}
    missing = [e for e in expected if e not in measured]
    errors = {k: r["error"] for k, r in measured.items() if "error" in r}
    best = max((r for r in rows if r.get("mfu") is not None and r.get("grad_accum", 1) == 1),
               key=lambda r: r["mfu"], default=None)
    return {"pass": not missing and not errors, "missing": missing, "errors": errors, "rows": measured,
            "best": {"backend": best["backend"], "compile": best["compile"], "mfu": best["mfu"],
                     "tokens_per_s": best["tokens_per_s"]} if best else None}


def judge_train(work: Path, rc: int | None, bench_rows: list[dict], tolerance: float, until_step: int) -> dict:
    path = work / "run" / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    out = {"rc": rc, "steps": len(rows)}
    if rc != 0 or len(rows) < 8:
        return {**out, "pass": False, "why": "refact-train failed or logged fewer than 8 steps"}
    losses = [r["loss"] for r in rows]
    first, last = statistics.mean(losses[:3]), statistics.mean(losses[-5:])
    mfus = [r["mfu"] for r in rows if r["step"] > until_step + 1 and r.get("mfu") is not None]
    tps = [r["tokens_per_s"] for r in rows if r["step"] > until_step + 1]
    bench = next((r for r in bench_rows if r.get("grad_accum", 1) > 1 and "mfu" in r), None)
    out.update(loss_first3=first, loss_last5=last, loss_falls=last < 0.9 * first, losses=losses,
               trainer_mfu_median=statistics.median(mfus) if mfus else None,
               trainer_tokens_per_s_median=statistics.median(tps) if tps else None,
               bench_mfu_same_config=bench["mfu"] if bench else None,
               peak_gpu_alloc_gib=max((r.get("gpu_max_alloc_gb") or 0) for r in rows) or None)
    agree = None
    if out["trainer_mfu_median"] is not None and out["bench_mfu_same_config"]:
        out["mfu_relative_diff"] = abs(out["trainer_mfu_median"] / out["bench_mfu_same_config"] - 1)
        agree = out["mfu_relative_diff"] <= tolerance
    out.update(mfu_agrees=agree, mfu_tolerance=tolerance, **{"pass": bool(out["loss_falls"] and agree)})
    return out


def judge_memory(rows: list[dict]) -> dict:
    errors = {r["config"]: r["error"] for r in rows if "error" in r}
    lora = next((r for r in rows if r["config"] == "lora" and "error" not in r), None)
    return {"pass": bool(rows) and not errors, "errors": errors, "rows": rows,
            "lora_fits_a5000": lora.get("fits_a5000_24gib") if lora else None}


def judge_generation(result: dict | None) -> dict:
    rows = (result or {}).get("rows", [])
    batches = sorted(r["batch"] for r in rows)
    ok = batches == [1, 8] and all(r["new_tokens_per_s"] > 0 for r in rows)
    return {"pass": ok, "rows": rows, "batched_equals_single": (result or {}).get("batched_equals_single")}


def fmt(x, pct=False, nd=1):
    if x is None:
        return "n/a"
    return f"{100 * x:.{nd}f}%" if pct else (f"{x:,.{nd}f}" if isinstance(x, float) else str(x))


def summary(name: str, st: dict) -> str:
    if name == "install":
        return f"from wheels: {', '.join(st.get('installed_from_wheels') or []) or 'nothing missing'}"
    if name == "tests":
        return f"{st.get('passed')} passed, {st.get('skipped')} skipped, {st.get('failures')} failed"
    if name == "mfu" and st.get("best"):
        b = st["best"]
        return f"best: {b['backend']} compile={b['compile']}, MFU {fmt(b['mfu'], True)}"
    if name == "memory" and st.get("errors"):
        return "errors in: " + ", ".join(st["errors"])
    if name == "train":
        return f"loss falls: {st.get('loss_falls')}, MFU agrees with the bench: {st.get('mfu_agrees')}"
    return ""


def markdown(rep: dict) -> str:
    m, s = rep["machine"], rep["steps"]
    lines = [f"# GPU check ({rep['mode']} mode): {'PASS' if rep['pass'] else 'FAIL'}", "",
             f"{m.get('gpu', 'CPU only')}, {m['platform']}, Python {m['python']}, {m['cpus']} CPUs, "
             f"{m['date_utc']} UTC; total {rep['seconds']:.0f} s", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), "",
             "| step | result | seconds | notes |", "| --- | --- | --- | --- |"]
    for name, st in s.items():
        notes = st.get("why") or summary(name, st)
        lines.append(f"| {name} | {'pass' if st.get('pass') else 'FAIL'} | {fmt(st.get('seconds'))} | {notes} |")
    lines += ["", "## MFU and tokens/s (fwd + bwd + Lion)", "",
              "| backend | compile | ckpt | micro x accum | tokens/s | MFU | step s | warm-up s | peak GiB |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in s["mfu"].get("rows", {}).values():
        if "tokens_per_s" in r:
            lines.append(f"| {r['backend']} | {r['compile']} | {r['activation_checkpointing']} | "
                         f"{r['micro_batch']} x {r['grad_accum']} | {r['tokens_per_s']:,.0f} | {fmt(r['mfu'], True)} | "
                         f"{r['step_s']} | {r['warmup_s']} | {r.get('peak_memory_gib', 'n/a')} |")
        else:
            lines.append(f"| {r['backend']} | {r['compile']} | | | {r.get('skipped') or r.get('error')} | | | | |")
    t = s["train"]
    lines += ["", "## refact-train, 30 steps", "",
              f"loss {fmt(t.get('loss_first3'), nd=3)} (first 3) -> {fmt(t.get('loss_last5'), nd=3)} (last 5); "
              f"logged MFU {fmt(t.get('trainer_mfu_median'), True)} vs bench "
              f"{fmt(t.get('bench_mfu_same_config'), True)} (tolerance {fmt(t.get('mfu_tolerance'), True, 0)}); "
              f"peak GPU memory {fmt(t.get('peak_gpu_alloc_gib'))}"
              " GiB", "", "## Peak memory, 4096 context, micro-batch 1", "",
              "| config | ckpt | world | peak allocated GiB | peak reserved GiB | fits 24 GiB A5000 |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in s["memory"].get("rows", []):
        lines.append(f"| {r['config']} | {r.get('activation_checkpointing')} | {r.get('world_size')} | "
                     f"{fmt(r.get('peak_allocated_gib'))} | {fmt(r.get('peak_reserved_gib'))} | "
                     f"{r.get('fits_a5000_24gib', r.get('error', ''))} |")
    lines += ["", "## Generation with the KV cache", ""]
    for r in s["generation"].get("rows", []):
        lines.append(f"- batch {r['batch']}: {r['new_tokens_per_s']:,.1f} new tokens/s "
                     f"({r['prompt_tokens']}-token prompt, {r['new_tokens_per_row']} new per row, {r['dtype']})")
    lines += ["", "## Targets", ""] + [f"- {k}: {v}" for k, v in rep["targets"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mode", choices=["cpu", "gpu"], required=True)
    ap.add_argument("--mfu-tolerance", type=float, required=True)
    ap.add_argument("--compile", type=int, default=1)
    ap.add_argument("--started", type=float, default=time.time())
    ap.add_argument("--until-step", type=int, default=10, help="early dropout's last step in the train step")
    args = ap.parse_args()
    w = args.work
    rows = [json.loads(line) for line in (w / "steps.jsonl").read_text().splitlines() if line.strip()]
    runs = {r["step"]: r for r in rows}
    mfu_rows = load(w / "mfu.json", [])
    backends = ["sdpa"] if args.mode == "cpu" else ["sdpa", "flex", "flash"]
    expected = [f"{b}/eager" for b in backends] + ["sdpa/eager/train_config"]
    expected += [f"{b}/compiled" for b in backends] if args.compile else []
    install = load(w / "install.json", {"ok": False})
    steps = {
        "install": {"pass": bool(install.get("ok")), **install},
        "tests": judge_tests(w, args.mode),
        "mfu": judge_mfu(mfu_rows, expected),
        "train": judge_train(w, runs.get("train", {}).get("rc"), mfu_rows, args.mfu_tolerance, args.until_step),
        "memory": judge_memory(load(w / "memory.json", [])),
        "generation": judge_generation(load(w / "generation.json")),
    }
    for name, st in steps.items():
        mine = {k: v for k, v in runs.items() if k == name or k.startswith(f"{name}_")}
        st["runs"] = mine
        st["seconds"] = sum(float(r.get("seconds") or 0) for r in mine.values())
        bad = [f"{k}: " + ("timed out" if r.get("timed_out") else r.get("skipped") or f"rc {r.get('rc')}")
               for k, r in mine.items() if r.get("rc") != 0]
        if bad:
            st["pass"] = False
            st["why"] = "; ".join(bad)
    best = steps["mfu"]["best"]
    targets = {"best MFU >= 50% (1.6B, 4096, bf16)": (best["mfu"] >= 0.5 if best else None)
               if args.mode == "gpu" else "n/a on CPU",
               "LoRA at 4096 fits a 24 GiB A5000": steps["memory"]["lora_fits_a5000"]
               if args.mode == "gpu" else "n/a on CPU"}
    rep = {"mode": args.mode, "pass": all(s["pass"] for s in steps.values()), "seconds": time.time() - args.started,
           "machine": machine(), "targets": targets, "steps": steps}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "gpu_check.json", rep)
    write_text_atomic(args.out / "gpu_check.md", markdown(rep))
    logs = []
    for log in sorted((w / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-300:]
        logs.append(f"===== {log.stem} (last {len(tail)} lines) =====\n" + "\n".join(tail))
    write_text_atomic(args.out / "gpu_check.log", "\n".join(logs) + "\n")
    print(markdown(rep))
    sys.exit(0 if rep["pass"] else 1)


if __name__ == "__main__":
    main()
