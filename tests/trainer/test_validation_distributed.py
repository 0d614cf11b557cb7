"""Validation under torchrun (2 processes, gloo) on every backend: each rank gets the same value, equal to one
process's evaluation of the same weights (the hand computation of test_validation.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, cli_env, compose, free_port, metrics, run_cli, train_inprocess
from refact_train.trainer import Trainer
from test_validation import hand_validation

HERE = Path(__file__).parent
# 139 windows of 64 tokens, micro-batch 4: 35 micro-batches, so one rank runs a spare forward pass
VAL = ["validation.every=2", "validation.max_batches=0", "data.fim.rate=0"]


@pytest.fixture(scope="module")
def checkpoint(corpus_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("single")
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2", "checkpoint.every=2"] + VAL)
    return run / "checkpoints" / "step-00000002"


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("dist", ["ddp", "fsdp2", "zero2", "zero3"])
def test_validation_equal_across_ranks_and_to_one_process(corpus_dir, checkpoint, tmp_path, dist):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "validation_ranks.py"), str(tmp_path),
           f"data.path={corpus_dir}", f"run_dir={tmp_path / 'run'}", f"dist={dist}", f"resume={checkpoint}"] + VAL
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=cli_env())
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # all-reduced: bitwise the same on both ranks
    assert ranks[0]["training_mode"] is True  # put back in train mode
    loss, bpb = hand_validation(corpus_dir, checkpoint)
    assert ranks[0]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert ranks[0]["val_bits_per_byte"] == pytest.approx(bpb, rel=1e-5)


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_run_logs_the_single_process_validation_curve(corpus_dir, tmp_path):
    common = [f"data.path={corpus_dir}", "train.max_steps=4", "checkpoint.every=100"] + VAL
    train_inprocess(common + [f"run_dir={tmp_path / 'one'}"])
    run_cli(common + [f"run_dir={tmp_path / 'two'}", "dist=ddp"], nproc=2)
    one = {r["step"]: r["val_loss"] for r in metrics(tmp_path / "one") if "val_loss" in r}
    two = {r["step"]: r["val_loss"] for r in metrics(tmp_path / "two") if "val_loss" in r}
    assert sorted(two) == [0, 2, 4] and all(two[s] == pytest.approx(one[s], rel=1e-4) for s in one)
    best = json.loads((tmp_path / "two" / "best.json").read_text())
    assert best["step"] == 4 and (tmp_path / "two" / "checkpoints" / "step-00000004").is_dir()


@pytest.mark.distributed
def test_heldout_fim_is_shared_by_the_ranks_and_equals_one_process(corpus_dir, tmp_path):
    """validation.fim_every under 2 ranks: rank 0 completed every prompt while rank 1 waited (and got no numbers);
    now each rank completes its batches of 8 and both get the one-process scores."""
    import shutil
    from data_pipeline.records import Document, write_documents
    from trainer_corpus import stdlib_documents
    data = tmp_path / "data"
    shutil.copytree(corpus_dir, data)
    write_documents(data / "heldout" / "part-00000.parquet",
                    [Document(id=f"d{i}", text=t, kind="code", lang="python", source="t")
                     for i, t in enumerate(stdlib_documents()[-4:])])
    args = [f"data.path={data}", "validation.fim_every=1", "validation.fim_cuts=16", "validation.fim_max_new_tokens=8"]
    trainer = Trainer(compose(TINY + args + [f"run_dir={tmp_path / 'one'}"]))  # one process: the reference
    try:
        one = trainer.validator.heldout_fim()
    finally:
        trainer.close()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), str(HERE / "validation_ranks.py"),
                           str(tmp_path), "--fim", *args, f"run_dir={tmp_path / 'two'}", "dist=ddp"],
                          capture_output=True, text=True, timeout=300, env=cli_env())
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert one["val_fim_tasks"] == 16 and 0 < one["val_fim_edit_similarity"] < 1
    assert [r["completed"] for r in ranks] == [8, 8]  # two batches of 8: one each
    for r in ranks:
        assert r["val_fim_tasks"] == 16 and r["val_fim_exact_match"] == one["val_fim_exact_match"]
        assert r["val_fim_edit_similarity"] == pytest.approx(one["val_fim_edit_similarity"], abs=1e-12)
