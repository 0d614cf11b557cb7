"""Checkpoints that are damaged, handed over or from another run: each is skipped or refused in one line."""
import json
import shutil

import pytest

from helpers import train_inprocess
from refact_train.checkpoint import CheckpointError, latest_valid, read_trainer_state, verify, write_marker


@pytest.fixture
def step_dir(tmp_path):
    """A checkpoint directory with the files every backend writes (their contents do not matter to verify)."""
    d = tmp_path / "checkpoints" / "step-00000002"
    (d / "rng").mkdir(parents=True)
    for name in ("model.pt", "optimizer.pt", "config.yaml", "rng/rank-00000.pt"):
        (d / name).write_bytes(b"x" * 10)
    (d / "trainer_state.json").write_text(json.dumps({"step": 2, "samples_seen": 16}))
    write_marker(d)
    return d


@pytest.mark.parametrize("marker, reason", [
    ("[1, 2]", "unreadable (TypeError"),  # each of these raised from verify: resume=auto stopped with a traceback
    ('{"files": [1]}', "unreadable (AttributeError"),
    ('{"files": {"model.pt": {}}}', "unreadable (KeyError"),
    ('{"files": {"model.pt": {"bytes": "ten", "xxh64": "0"}}}', "unreadable (ValueError"),
    ('{"files": {}}', "does not list model.pt, trainer_state.json, config.yaml"),  # passed as intact before
])
def test_a_malformed_marker_makes_the_checkpoint_skipped(step_dir, marker, reason, capsys):
    (step_dir / "COMPLETE.json").write_text(marker)
    assert reason in verify(step_dir)
    assert latest_valid(step_dir.parent) is None
    assert "trying an older one" in capsys.readouterr().err


def test_a_marker_naming_a_file_outside_the_checkpoint_is_refused(step_dir, tmp_path):
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"y" * 5)
    entries = json.loads((step_dir / "COMPLETE.json").read_text())["files"]
    for rel in ("../../elsewhere.bin", str(outside)):  # hashed as if part of the checkpoint before
        files = {**entries, rel: {"bytes": 5, "xxh64": "0"}}
        (step_dir / "COMPLETE.json").write_text(json.dumps({"files": files}))
        assert verify(step_dir) == f"COMPLETE.json names {rel}, a file outside the checkpoint"


def test_a_trainer_state_of_another_version_is_named(step_dir):
    state = json.loads((step_dir / "trainer_state.json").read_text())
    (step_dir / "trainer_state.json").write_text(json.dumps({**state, "future_key": 1}))  # a TypeError before
    with pytest.raises(CheckpointError, match=r"trainer_state.json: unknown key\(s\) \['future_key'\]"):
        read_trainer_state(step_dir)
    (step_dir / "trainer_state.json").write_text(json.dumps({**state, "step": "two"}))
    with pytest.raises(CheckpointError, match="trainer_state.json.step: expected an integer"):
        read_trainer_state(step_dir)


def test_resume_into_another_model_or_lora_shape_is_refused(corpus_dir, tmp_path):
    # Before: another n_layer ran into a RuntimeError on the optimizer state, n_embd / vocab / LoRA rank, targets or
    # LoRA on vs off into load_state_dict's tracebacks; another LoRA alpha resumed silently with rescaled adapters.
    common = [f"data.path={corpus_dir}", "train.max_steps=2", "train.stop_after=1"]
    plain, lora = tmp_path / "plain", tmp_path / "lora"
    train_inprocess(common + [f"run_dir={plain}"])
    train_inprocess(common + [f"run_dir={lora}", "lora.enabled=true"])
    for run, changed, said in ((plain, "model.n_layer=3", "model.n_layer=2 in the checkpoint, 3 here"),
                               (plain, "model.vocab_size=1024", "model.vocab_size=768 in the checkpoint, 1024 here"),
                               (plain, "lora.enabled=true", "lora.enabled=False in the checkpoint, True here"),
                               (lora, "lora.alpha=64", "lora.alpha=32 in the checkpoint, 64 here")):
        extra = {"model.vocab_size=1024": ["train.vocab_from_tokenizer=false"], "lora.alpha=64": ["lora.enabled=true"]}
        extra = extra.get(changed, [])
        with pytest.raises(CheckpointError, match="its weights do not fit this run's model: " + said):
            train_inprocess(common + [f"run_dir={run}", changed, *extra])
    # what shapes no weight may change: the LoRA dropout, the targets' order, the model's dropout
    state = train_inprocess(common[:-1] + [f"run_dir={lora}", "lora.enabled=true", "lora.dropout=0.1",
                                           "lora.target_modules=[gate_up_proj,c_proj,kv,q]", "model.dropout=0.1"])
    assert state.step == 2
    shutil.rmtree(lora)


def test_a_checkpoint_whose_paths_hold_a_dollar_brace_loads(corpus_dir, tmp_path):
    # refact-export stopped with "Interpolation key 'x' not found": the saved (already resolved) config was read
    # back through OmegaConf, which took a data.path or run_dir holding `${x}` for a reference
    from refact_train.models import load_model_from_checkpoint

    run = tmp_path / "run"
    train_inprocess([f"data.path={corpus_dir}", "train.max_steps=1", f"run_dir={run}"])
    step = next((run / "checkpoints").glob("step-*"))
    config = step / "config.yaml"
    config.write_text(config.read_text().replace(f"run_dir: {run}", "run_dir: /runs/${x} and ${oc.env:HOME}"))
    write_marker(step)
    model, _ = load_model_from_checkpoint(step)
    assert model.config.n_layer == 2


def test_what_a_killed_save_leaves_is_cleared_by_the_next_run(corpus_dir, tmp_path):
    """A kill mid-save left a model-sized checkpoints/.tmp-step-N for ever, and a kill between a re-save's two
    renames and its cleanup left .old-step-N, on which the next re-save of that step failed (os.replace onto a
    non-empty directory)."""
    run = tmp_path / "run"
    common = [f"data.path={corpus_dir}", f"run_dir={run}", "checkpoint.every=1", "train.max_steps=2"]
    train_inprocess(common)
    ckpts = run / "checkpoints"
    (ckpts / ".tmp-step-00000007" / "rng").mkdir(parents=True)  # as a kill mid-save leaves it
    (ckpts / ".tmp-step-00000007" / "model.pt").write_bytes(b"x" * 1000)
    shutil.copytree(ckpts / "step-00000002", ckpts / ".old-step-00000002")  # a re-save cut before its cleanup
    state = train_inprocess(common + [f"resume={ckpts / 'step-00000001'}"])  # step 2 is saved again
    assert state.step == 2
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000001", "step-00000002"]


def test_a_model_smaller_than_the_tokenizer_is_a_config_error(corpus_dir, tmp_path):
    # a ValueError from prepare_model, which refact-train did not catch: a traceback
    from refact_train.train_config import ConfigError

    with pytest.raises(ConfigError, match=r"model.vocab_size 64 rows < the tokenizer's \d+ tokens"):
        train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path / 'r'}", "train.max_steps=1",
                         "train.vocab_from_tokenizer=false", "model.vocab_size=64"])
