"""scripts/finetune_repo.sh and scripts/main_job.sh on messy input: relative paths from another directory, a symlinked
script, a bare repository, a base that is no HF directory, no code to hold out, garbage in the number knobs.
Every case stops before any model work (seconds); the end-to-end runs with hostile path names are the slow tests."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FINETUNE = REPO / "scripts" / "finetune_repo.sh"
MAIN_JOB = REPO / "scripts" / "main_job.sh"


def run(script: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=dict(os.environ, **env))


def hf_dir(path: Path, tokenizer: bool = False) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    if tokenizer:
        from data_pipeline.tokenizer import train_bpe
        train_bpe(["def f(x):\n    return x + 1\n" * 20, "import os\nprint(os.getcwd())\n" * 20],
                  vocab_size=300).save(path)
    return path


def test_finetune_repo_reads_relative_paths_from_the_callers_directory_and_refuses_bad_ones(tmp_path):
    hf_dir(tmp_path / "base")
    (tmp_path / "code").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "bare.git")], check=True)
    (tmp_path / "nohf").mkdir()
    work = tmp_path / "ft"
    cases = [  # (arguments, environment, what the error says)
        (["notes.txt", "code"], {}, f"BASE_HF_DIR notes.txt is not a Hugging Face model directory (no config.json in "
                                    f"{tmp_path}/notes.txt)"),
        (["nohf", "code"], {}, "BASE_HF_DIR nohf is not a Hugging Face model directory"),
        (["base", "notes.txt"], {}, f"REPO notes.txt is not a directory ({tmp_path}/notes.txt)"),
        (["base", "-missing"], {}, f"REPO -missing is not a directory ({tmp_path}/-missing)"),
        (["base", "code", "bare.git"], {}, "REPO bare.git is a bare git repository (no working files; its hooks"),
        (["base", "code"], {"REFACT_FT_STEPS": "08x"}, "REFACT_FT_STEPS='08x' is not a whole number >= 1"),
        (["base", "code"], {"REFACT_FT_HOLDOUT": "0"}, "REFACT_FT_HOLDOUT='0' is not a whole number >= 1"),
        (["base", "code"], {"REFACT_FT_VAL_EVERY": "-1"}, "REFACT_FT_VAL_EVERY='-1' is not a whole number >= 0"),
    ]
    for args, env, said in cases:
        done = run(FINETUNE, *args, cwd=tmp_path, REFACT_FT_DIR="ft", **env)
        assert done.returncode == 2 and said in done.stderr, (args, env, done.stderr)
    assert not work.exists()


def test_finetune_repo_without_code_to_hold_out_stops_after_the_pipeline_and_says_why(tmp_path):
    """A repository of one text file: nothing is held out, so nothing can be evaluated; the script must say so."""
    hf_dir(tmp_path / "base", tokenizer=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.txt").write_text("Notes about the project, no code at all.\n")
    done = run(FINETUNE, "base", "docs", cwd=tmp_path, REFACT_FT_DIR="ft")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "finetune_repo: no file of the repositories was held out for the evaluation" in done.stderr
    assert f"{tmp_path}/ft/data/stats.json" in done.stderr and "2/5" not in done.stdout


def test_main_job_checks_its_knobs_and_reads_its_directory_from_the_caller(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "main_job").symlink_to(MAIN_JOB)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    for knob, value in [("REFACT_DEMO_STEPS", "1.5"), ("REFACT_DEMO_STEPS", "a[$(touch pwned)]"),
                        ("REFACT_DEMO_FILES", "0"), ("REFACT_DEMO_LEAKED", "-2")]:
        done = run(tmp_path / "bin" / "main_job", cwd=tmp_path, REFACT_DEMO_SKIP_SETUP="1", REFACT_DEMO_DIR="mine",
                   **{knob: value})
        assert done.returncode == 2 and f"main_job: {knob}='{value}' is not a whole number" in done.stderr
    # through a symlink, from another directory: REFACT_DEMO_DIR=mine is this directory's, and it is not a main job's
    done = run(tmp_path / "bin" / "main_job", cwd=tmp_path, REFACT_DEMO_SKIP_SETUP="1", REFACT_DEMO_DIR="mine")
    assert done.returncode == 2 and f"{mine} exists and is not a main-job directory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "mine"] and os.listdir(mine) == ["notes.txt"]
