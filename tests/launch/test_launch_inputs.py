"""What the launchers do with messy input: paths Hydra cannot read unquoted, counts with leading zeros or garbage,
a taken or invalid port, a symlinked launcher, Slurm commands absent (launch/args.sh, common.sh, torchrun.sh,
slurm/*.sbatch)."""
from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"
HOSTILE = ["/runs/my run", "/home/josé/文件", "/runs/it's", "a\\b", "ends\\", "ends\\\\", "a\\'b", "x${y}", "x\\${y}",
           "$HOME", "`id`", "a,b=c~d#e[f](g){h}", "-lead", "*", "a\nb", "'", "\\", '"q"', "%x", ""]


def bash(script: str, *args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, "bash", *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})), cwd=cwd)


def test_hydra_quote_gives_back_every_path_through_hydra_and_omegaconf():
    rng = random.Random(0)
    alphabet = "ab \\'\"${}`,=~#[]()*?é\n\t:%-!"
    cases = HOSTILE + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(150)]
    script = f'source "{LAUNCH}/args.sh"; for s in "$@"; do q=$(hydra_quote "$s"); ' \
             'printf "%s\\0" "$q" "$(hydra_unquote "$q")"; done'
    out = bash(script, *cases).stdout.split("\0")
    parser = OverridesParser.create()
    for i, path in enumerate(cases):
        quoted, back = out[2 * i], out[2 * i + 1]
        value = parser.parse_override("key=" + quoted).value()
        assert OmegaConf.create({"key": value}).key == path, (path, quoted)
        assert back == path.rstrip("\n"), (path, quoted, back)  # $(...) drops a trailing newline


def test_a_quoted_run_dir_gives_the_log_directory_hydra_reads():
    """refact-train reads run_dir='/runs/my run' as /runs/my run: the per-rank logs go there, not under ./'"""
    got = bash(f'source "{LAUNCH}/common.sh"; launch_log_dir "$@"', "model=tiny", "run_dir='/runs/it\\'s mine'")
    assert got.stdout.strip() == "/runs/it's mine/logs", got.stderr


def test_counts_with_leading_zeros_are_decimal_and_zero_is_refused(tmp_path):
    env = {"LAUNCH_DEVICE": "cpu", "NPROC_PER_NODE": "08", "OMP_NUM_THREADS": "", "SLURM_CPUS_ON_NODE": "16"}
    got = bash(f'source "{LAUNCH}/common.sh"; launch_resolve_processes; launch_export_runtime_env; '
               'echo "$NPROC_PER_NODE $OMP_NUM_THREADS"', env=env)
    assert got.stdout.strip() == "8 2" and got.stderr == ""  # was: "08: value too great for base", then 08 ranks
    for value in ("00", "-1", "abc", "1e3"):
        got = bash(f'bash "{LAUNCH}/torchrun.sh" "run_dir={tmp_path}"', env={"NPROC_PER_NODE": value})
        assert got.returncode == 2 and f"NPROC_PER_NODE must be a positive integer, got '{value}'" in got.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_master_port_that_is_no_port_is_refused_before_anything_starts(tmp_path):
    for port in ("abc", "99999", "-1"):
        got = bash(f'bash "{LAUNCH}/torchrun.sh" "run_dir={tmp_path}"',
                   env={"MASTER_PORT": port, "LAUNCH_DEVICE": "cpu", "LAUNCH_COMMAND": "true"})
        assert got.returncode == 2, got.stderr
        assert f"rendezvous port '{port}' is not a TCP port (0-65535): check MASTER_PORT" in got.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_master_port_in_use_is_named_as_such(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        got = bash(f'bash "{LAUNCH}/torchrun.sh" "run_dir={tmp_path}"',
                   env={"MASTER_PORT": str(port), "LAUNCH_DEVICE": "cpu", "LAUNCH_COMMAND": "true"})
    assert got.returncode != 0
    assert f"port {port} is already in use on" in got.stderr and "unset MASTER_PORT" in got.stderr


def test_torchrun_sh_works_through_a_symlink_from_another_directory(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "train").symlink_to(LAUNCH / "torchrun.sh")
    got = bash('bash bin/train --help', cwd=tmp_path)
    assert got.returncode == 0 and "launch/torchrun.sh [--nproc N]" in got.stdout, got.stderr  # was: no common.sh


def test_pipeline_sbatch_refuses_bad_knobs_and_a_missing_sbatch(tmp_path):
    script = LAUNCH / "slurm" / "pipeline.sbatch"
    args = [f"input={tmp_path}", f"output={tmp_path / 'out'}"]
    for knob, value in [("PIPELINE_TASKS", "00"), ("PIPELINE_TASKS", "08x"), ("PIPELINE_CPUS_PER_TASK", "abc"),
                        ("PIPELINE_MAX_PARALLEL", "0")]:
        got = bash(f'bash "{script}" "$@"', *args, env={knob: value})
        assert got.returncode == 2 and f"{knob}='{value}' is not a whole number >= 1" in got.stderr, got.stderr
    bin_dir = tmp_path / "bin"  # a PATH without the Slurm commands
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(subprocess.check_output(["which", "dirname"], text=True).strip())
    got = subprocess.run(["/bin/bash", str(script), *args], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PATH=str(bin_dir)))
    assert got.returncode == 2 and "sbatch is not on PATH: submit from a Slurm login node" in got.stderr
    assert not (tmp_path / "out").exists()


def test_train_sbatch_run_outside_slurm_says_to_submit_it():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    got = subprocess.run(["bash", str(LAUNCH / "slurm" / "train.sbatch"), "run_dir=x"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert got.returncode == 2 and "submit this script with sbatch" in got.stderr  # was: SLURM_JOB_ID: unbound
