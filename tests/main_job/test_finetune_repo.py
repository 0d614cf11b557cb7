"""`bash scripts/finetune_repo.sh BASE_HF_DIR REPO` end to end on a small model and a small git repository."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("eval_compare", REPO_ROOT / "scripts" / "eval_compare.py")
eval_compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eval_compare)

STDLIB = Path(sysconfig.get_path("stdlib"))
REPO_FILES = ["json/decoder.py", "json/encoder.py", "json/scanner.py", "csv.py", "textwrap.py", "shlex.py",
              "fnmatch.py", "glob.py", "colorsys.py", "bisect.py", "heapq.py", "queue.py", "sched.py", "string.py"]


def test_compare_table_rows_and_changes():
    before = {"heldout_fim": {"tasks": 8, "exact_match": 0.25, "edit_similarity": 0.5},
              "perplexity": {"loss": 2.0, "perplexity": 7.389, "bits_per_byte": 1.0}}
    after = {"heldout_fim": {"tasks": 8, "exact_match": 0.5, "edit_similarity": 0.75},
             "perplexity": {"loss": 1.5, "perplexity": 4.482, "bits_per_byte": 0.8}}
    table = eval_compare.compare_table(before, after)
    assert "| heldout_fim | exact match % | 25 | 50 | +25 |" in table
    assert "| perplexity | loss (nats/token) | 2 | 1.5 | -0.5 |" in table
    assert len(table.strip().splitlines()) == 2 + 6
    assert eval_compare.compare_table(before, {}) .strip().count("\n") == 1  # header only: nothing to compare


def make_git_repo(path: Path) -> Path:
    for rel in REPO_FILES:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STDLIB / rel, path / rel)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "init"], check=True)
    return path


def make_base_model(path: Path) -> Path:
    """A small random model of the Refact architecture with a BPE trained on stdlib code, exported as HF."""
    from data_pipeline.tokenizer import train_bpe
    from refact_train.hf import save_hf_checkpoint
    from refact_train.model import RefactForCausalLM
    from refact_train.models import load_model_config
    texts = [(STDLIB / rel).read_text() for rel in ["os.py", "pathlib.py", "argparse.py", "typing.py"]]
    tok = train_bpe(texts, vocab_size=1024)
    torch.manual_seed(0)
    cfg = load_model_config("tiny", vocab_size=tok.padded_vocab_size, n_embd=64, n_head=2, n_layer=2,
                            n_positions=256)
    save_hf_checkpoint(RefactForCausalLM(cfg), path, tokenizer=tok)
    return path


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_finetune_repo_lora(tmp_path):
    from refact_train.hf import load_hf_checkpoint
    base = make_base_model(tmp_path / "base")
    # names that break unquoted Hydra values and naive shell code; the work directory given relative to the caller
    repo = make_git_repo(tmp_path / "-my rëpo's ${x},")
    work = tmp_path / "fé i'rd $x"
    env = dict(os.environ, PYTHON=sys.executable, REFACT_FT_DIR=work.name, REFACT_FT_STEPS="3",
               REFACT_FT_SEQ_LEN="128", REFACT_FT_BATCH="4", REFACT_FT_MICRO_BATCH="2", REFACT_FT_HOLDOUT="2",
               REFACT_FT_EVAL_LIMIT="2", REFACT_FT_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               REFACT_FT_GGUF_DTYPE="f32",
               REFACT_FT_TRAIN_ARGS="train.device=cpu train.precision=fp32 checkpoint.every=3 metrics.progress=false")
    script = str(REPO_ROOT / "scripts" / "finetune_repo.sh")
    done = subprocess.run(["bash", script, str(base), repo.name, "--gguf"], env=env, capture_output=True, text=True,
                          timeout=1700, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    stats = json.loads((work / "data" / "stats.json").read_text())
    assert "license" not in [s["stage"] for s in stats["stages"]]  # licence filter off by default
    assert stats["output"]["documents"] >= len(REPO_FILES) - 2      # the repository's files survive the filters
    assert stats["shards"]["counts"]["valid"]["documents"] == 2
    before = json.loads((work / "eval" / "before.json").read_text())["tasks"]
    after = json.loads((work / "eval" / "after.json").read_text())["tasks"]
    assert before["heldout_fim"]["tasks"] == after["heldout_fim"]["tasks"] > 0  # the same cuts before and after
    assert "| heldout_fim | exact match % |" in (work / "eval" / "compare.md").read_text()
    assert "| perplexity | loss (nats/token) |" in done.stdout
    # validation during the fine-tune (the experiment's schedule: step 0 and the last step), the best one exported
    best = json.loads((work / "run" / "best.json").read_text())
    assert best["step"] == 3 and f"best checkpoint: step 3 (val_loss {best['val_loss']:.4f})" in done.stdout
    assert "validation loss: step 0" in done.stdout and "from checkpoint step-00000003" in done.stdout
    assert (work / "run" / "plots" / "dashboard.png").is_file()

    # a merged, plain HF directory: LoRA changed the targeted weights and nothing else
    base_model, _ = load_hf_checkpoint(base)
    tuned, _ = load_hf_checkpoint(work / "hf")
    b, t = base_model.state_dict(), tuned.state_dict()
    assert set(b) == set(t)
    changed = {k for k in b if not torch.equal(b[k], t[k])}
    assert changed and all(any(m in k for m in ("attn.q", "attn.kv", "c_proj", "gate_up_proj")) for k in changed)

    # --gguf: the merged model for llama.cpp beside it, holding the merged (centred) weights
    import gguf

    from refact_train.hf.gguf import centre_tensor
    in_file = {x.name: x.data for x in gguf.GGUFReader(work / "model-f32.gguf").tensors}
    assert torch.equal(torch.from_numpy(in_file["blk.0.attn_q.weight"].copy()), t["transformer.h.0.attn.q.weight"])
    want = centre_tensor("transformer.h.0.attn.c_proj.weight", t["transformer.h.0.attn.c_proj.weight"], torch.float32)
    assert torch.equal(torch.from_numpy(in_file["blk.0.attn_output.weight"].copy()), want)
