"""Validation while training: the held-out loss against a hand computation, the best checkpoint through rotation,
resume and export, and the dashboard of a resumed run."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import metrics, train_inprocess, weights
from data_pipeline.fim import FimConfig, apply_fim, fim_rng
from data_pipeline.shards import open_split
from data_pipeline.tokenizer import load_tokenizer
from refact_train.models import load_model_from_checkpoint

VAL = ["validation.every=2", "validation.max_batches=0"]  # the whole valid split: its last window is short


def val_records(run) -> dict[int, dict]:
    return {r["step"]: r for r in metrics(run) if "val_loss" in r}


def train_losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run) if "loss" in r}


def hand_validation(corpus_dir, ckpt, seq_len: int = 64, fim: dict | None = None, seed: int = 1234):
    """(loss, bits per byte) of a checkpoint on the valid split, computed here from the shards and apply_fim."""
    model, _ = load_model_from_checkpoint(ckpt)
    tok = load_tokenizer(corpus_dir / "shards" / "tokenizer.json")
    stream = np.concatenate([np.asarray(a, dtype=np.int64) for a in open_split(corpus_dir, "valid")])
    cfg = FimConfig.from_dict(fim) if fim else None
    nll = n_tok = n_bytes = 0.0
    with torch.no_grad():
        for i, start in enumerate(range(0, len(stream) - 1, seq_len)):
            window = stream[start:start + seq_len + 1]
            ids, mask = apply_fim(window, rng=fim_rng(seed, i), cfg=cfg, tokenizer=tok) if cfg else (
                window, np.ones(len(window), dtype=bool))
            x, y, m = torch.from_numpy(ids[:-1])[None], torch.from_numpy(ids[1:]), torch.from_numpy(mask[1:])
            losses = F.cross_entropy(model(x)[0].double(), y, reduction="none")
            nll += float(losses[m].sum())
            n_tok += int(m.sum())
            n_bytes += sum(len(tok.decode_bytes([t])) for t in y[m].tolist() if t >= 19)  # 19 special tokens: 0 bytes
    return nll / n_tok, nll / math.log(2) / n_bytes


def test_validation_loss_equals_hand_computation(corpus_dir, tmp_path):
    """Dropout on in training, off in validation; FIM (data=pretrain, rate 0.5) with the validation seed."""
    run = tmp_path / "run"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2", "checkpoint.every=2",
                     "early_dropout.rate=0.3", "early_dropout.until_step=100"] + VAL)
    val = val_records(run)
    assert sorted(val) == [0, 2]  # at the start, then every 2 steps
    fim = {"mode": "pretrain", "rate": 0.5, "spm_rate": 0.5, "spm_variant": "served", "loss_on_sentinels": True}
    loss, bpb = hand_validation(corpus_dir, run / "checkpoints" / "step-00000002", fim=fim)
    assert val[2]["val_loss"] == pytest.approx(loss, rel=1e-6)
    assert val[2]["val_bits_per_byte"] == pytest.approx(bpb, rel=1e-6)
    assert val[2]["val_windows"] == 139 and val[2]["val_loss"] < val[0]["val_loss"]


def test_validation_leaves_training_untouched(corpus_dir, tmp_path):
    """Same losses and weights with and without validation: the model goes back to train mode (dropout on) and no
    RNG draw is spent."""
    common = [f"data.path={corpus_dir}", "train.max_steps=4", "checkpoint.every=4", "early_dropout.rate=0.3",
              "early_dropout.until_step=100"]
    train_inprocess(common + [f"run_dir={tmp_path / 'plain'}"])
    train_inprocess(common + [f"run_dir={tmp_path / 'val'}", "validation.every=1", "validation.max_batches=1"])
    assert train_losses(tmp_path / "val") == train_losses(tmp_path / "plain")
    a, b = weights(tmp_path / "val", 4), weights(tmp_path / "plain", 4)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_best_checkpoint_survives_rotation_resume_and_exports(corpus_dir, tmp_path):
    from refact_train.cli.export import main as export_main
    run = tmp_path / "run"
    common = [f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=10", "checkpoint.keep_last=1",
              "validation.every=2", "validation.max_batches=1"]
    # 1. the loss falls: steps 2 and 4 are best, saved although checkpoint.every=100; 2 is rotated away after 4
    train_inprocess(common + ["checkpoint.every=100", "train.stop_after=4"])
    assert json.loads((run / "best.json").read_text())["step"] == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004"]
    # 2. resumed with an lr that wrecks the weights: later losses are worse, rotation (keep 1) keeps step 4 too
    train_inprocess(common + ["checkpoint.every=2", "train.stop_after=8", "optim.lr=0.2"])
    val = val_records(run)
    assert val[6]["val_loss"] > val[4]["val_loss"] and val[8]["val_loss"] > val[4]["val_loss"], val
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    # 3. resumed again to the end: the best is still step 4 (it travels in the checkpoint's trainer state)
    train_inprocess(common + ["checkpoint.every=2", "optim.lr=0.2"])
    best = json.loads((run / "best.json").read_text())
    assert best["step"] == 4 and best["val_loss"] == val[4]["val_loss"]
    assert (run / "best").resolve() == (run / "checkpoints" / "step-00000004").resolve()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000010"]
    # refact-export RUN/best exports step 4's weights
    assert export_main([str(run / "best"), str(tmp_path / "hf")]) == 0
    from refact_train.hf import load_hf_checkpoint
    exported, _ = load_hf_checkpoint(tmp_path / "hf")
    ref = weights(run, 4)
    assert all(torch.equal(exported.state_dict()[k], ref[k]) for k in ref)


def test_dashboard_of_a_resumed_run(corpus_dir, tmp_path):
    """Steps 4-6 are logged twice (a resume from step 3 after the run reached 6): one continuous curve."""
    from refact_train.plot import plot_run, read_run_metrics
    run = tmp_path / "run"
    common = [f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=8", "checkpoint.every=3",
              "early_dropout.rate=0.1", "early_dropout.until_step=2", "validation.every=2",
              "validation.max_batches=1"]
    train_inprocess(common + ["train.stop_after=6"])
    first = train_losses(run)
    train_inprocess(common + [f"resume={run}/checkpoints/step-00000003", "optim.lr=1e-3"])  # another lr: new values
    m = read_run_metrics(run)
    assert [r["step"] for r in m.steps] == list(range(0, 9)) and m.resumed_at == [4]
    assert m.series("val_loss")[0] == [0, 2, 4, 6, 8]
    assert m.series("loss")[1][:3] == [first[1], first[2], first[3]]
    assert m.series("loss")[1][4] != first[5]  # step 5 comes from the second attempt
    pngs = plot_run(run)
    assert [p.name for p in pngs] == ["dashboard.png", "loss.png", "lr.png", "dropout.png", "tokens_per_s.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_dashboard_without_validation(corpus_dir, tmp_path):
    from refact_train.plot import plot_run, read_run_metrics
    run = tmp_path / "run"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2", "checkpoint.every=2"])
    assert read_run_metrics(run).series("val_loss") == ([], [])
    assert not (run / "best").exists() and not (run / "best.json").exists()
    assert (plot_run(run)[0]).stat().st_size > 10_000


def test_heldout_fim_during_training_equals_refact_eval(corpus_dir, tmp_path):
    """validation.fim_every: the same cuts, prompts and scores as `refact-eval tasks=[heldout_fim]` on the same
    weights (here all 2 held-out files, 4 cuts each)."""
    import shutil
    import subprocess
    import sys
    from data_pipeline.records import Document, write_documents
    from helpers import cli_env
    from trainer_corpus import stdlib_documents
    data = tmp_path / "data"
    shutil.copytree(corpus_dir, data)
    docs = stdlib_documents()[-2:]  # the valid split's two files, as the pipeline's holdout writes them
    write_documents(data / "heldout" / "part-00000.parquet",
                    [Document(id=f"d{i}", text=t, kind="code", lang="python", source="t") for i, t in enumerate(docs)])
    run = tmp_path / "run"
    train_inprocess([f"data.path={data}", f"run_dir={run}", "train.max_steps=2", "checkpoint.every=2",
                     "validation.fim_every=2", "validation.fim_cuts=8", "validation.fim_max_new_tokens=16"])
    fim = {r["step"]: r for r in metrics(run) if "val_fim_edit_similarity" in r}
    assert sorted(fim) == [0, 2] and "val_loss" not in fim[2]  # validation.every=0: no loss, no best
    assert not (run / "best.json").exists()
    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, "-m", "evals.cli", f"model={run}/checkpoints/step-00000002",
                           "tasks=[heldout_fim]", f"data={data}", f"out={out}", "heldout_fim.max_new_tokens=16",
                           "device=cpu", "cpu_threads=1"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = json.loads(out.read_text())["tasks"]["heldout_fim"]
    assert fim[2]["val_fim_tasks"] == ref["tasks"] == 8
    assert fim[2]["val_fim_exact_match"] == ref["exact_match"]
    assert fim[2]["val_fim_edit_similarity"] == pytest.approx(ref["edit_similarity"], abs=1e-12)


def test_missing_valid_split_is_refused_at_start_with_the_fix(corpus_dir, tmp_path):
    with pytest.raises(ValueError, match=r"validation.every=2: .*'test'.*holdout.fraction"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "validation.every=2",
                         "validation.split=test"])


def test_a_valid_split_of_one_token_is_refused_not_scored_zero(corpus_dir, tmp_path):
    """A valid split of one empty document (a lone EOT) has no target: val_loss was 0/0 logged as 0.0, and step 1
    became the best checkpoint no later step could beat."""
    from data_pipeline.shards import ManifestError
    from trainer_corpus import with_split
    data = with_split(corpus_dir, tmp_path / "data", "valid", [[]])
    with pytest.raises(ManifestError, match="split 'valid' holds 1 token, no next-token target"):
        train_inprocess([f"data.path={data}", f"run_dir={tmp_path / 'run'}", "validation.every=1"])


def test_heldout_fim_without_usable_heldout_files_is_a_manifest_error(corpus_dir, tmp_path):
    """No DIR/heldout, or held-out files with no code: a FileNotFoundError / ValueError traceback from refact-train
    before; a ManifestError (exit 2, one line) that says to hold out code or turn validation.fim_every off."""
    import shutil
    from data_pipeline.records import Document, write_documents
    from data_pipeline.shards import ManifestError
    data = tmp_path / "data"
    shutil.copytree(corpus_dir, data)
    common = [f"data.path={data}", f"run_dir={tmp_path / 'run'}", "validation.fim_every=1"]
    with pytest.raises(ManifestError, match=r"validation.fim_every=1: .*heldout: no held-out document records"):
        train_inprocess(common)
    write_documents(data / "heldout" / "part-00000.parquet",
                    [Document(id="t", text="Prose only.", kind="text", lang="en", source="notes")])
    with pytest.raises(ManifestError, match=r"heldout has no code document .* or set validation.fim_every=0"):
        train_inprocess(common)
