"""scripts/gpu_check.sh --cpu: the GPU proof's steps at the tiny shape on the CPU, with the GPU box simulated (its
absent packages hidden from Python, scripts/gpu_box_sim), so the script, its wheel install and its report cannot rot.

With .whl/ present (scripts/gpu_wheels.sh), the packages the box lacks are hidden here too and must come from the
wheels: the real install path. Without it (a fresh clone), they stay visible and nothing must be missing."""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_check(out: Path, work: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    env.update(GPU_CHECK_WORK=str(work), OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--cpu", *flags, str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu_check.json").read_text())
    return proc, report


def check_report(proc, report, out: Path, work: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["pass"] and report["mode"] == "cpu"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    steps = report["steps"]
    assert all(s["pass"] for s in steps.values()), {k: s.get("why") for k, s in steps.items()}
    install = steps["install"]
    wheels = sorted((REPO / ".whl").glob("*.whl"))
    if wheels:  # hidden, then installed from the carried wheels and imported from there
        assert install["installed_from_wheels"] and not install["no_wheel"]
        assert all(str(work / "site") in path for path in install["modules"].values())
    else:
        assert install["missing"] == []
    assert steps["tests"]["tests"] >= 10 and steps["tests"]["skipped"] == steps["tests"]["tests"]  # no CUDA here
    rows = steps["mfu"]["rows"]
    assert rows["sdpa/eager"]["tokens_per_s"] > 0 and rows["sdpa/eager"]["mfu"] > 0
    assert rows["sdpa/eager/train_config"]["activation_checkpointing"]
    train = steps["train"]
    assert train["steps"] == 30 and train["loss_falls"] and train["mfu_agrees"]
    assert [r["batch"] for r in steps["generation"]["rows"]] == [1, 8]
    assert {r["config"] for r in steps["memory"]["rows"]} == {"lora", "fsdp2_2way_zero2"}
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# GPU check (cpu mode): PASS") and "refact-train, 30 steps" in md
    assert "===== train" in (out / "gpu_check.log").read_text()


def test_cpu_mode_without_compile(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc, report = run_check(out, work, "--no-compile")
    check_report(proc, report, out, work)
    assert set(report["steps"]["mfu"]["rows"]) == {"sdpa/eager", "sdpa/eager/train_config"}


@pytest.mark.slow
def test_cpu_mode_with_compiled_rows(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc, report = run_check(out, work)
    check_report(proc, report, out, work)
    compiled = report["steps"]["mfu"]["rows"]["sdpa/compiled"]
    assert compiled["compile"] and compiled["tokens_per_s"] > 0


@pytest.mark.slow
def test_deadline_skips_the_late_steps_and_fails_the_report(tmp_path):
    """The time box: steps that would start past GPU_CHECK_DEADLINE_S are skipped and FAIL; the earlier ones stand.
    With 30 s (15 of them kept for the report) only the install step has the 10 s a step needs to start, whatever
    the machine's speed: every later step must be reported as skipped for lack of time."""
    out, work = tmp_path / "out", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_")}
    env.update(GPU_CHECK_WORK=str(work), OMP_NUM_THREADS="1", GPU_CHECK_DEADLINE_S="30")
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--cpu", "--no-compile", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    report = json.loads((out / "gpu_check.json").read_text())
    assert proc.returncode == 1 and not report["pass"]
    assert "install" in report["steps"] and "no time left" in report["steps"]["generation"]["why"]
    assert report["seconds"] < 30 + 30
