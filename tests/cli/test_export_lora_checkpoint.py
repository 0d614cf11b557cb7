"""refact-export of a LoRA trainer checkpoint (a peft state dict in model.pt): the HF directory and the GGUF carry the
merged weights, and a NaN in an adapter stops the export (tried: already right, kept as tests)."""
import gguf
import numpy as np
import torch
import yaml

from data_pipeline.tokenizer import load_tokenizer
from refact_train.checkpoint import write_marker
from refact_train.cli.export import main as export_main
from refact_train.hf import load_hf_checkpoint
from refact_train.lora import LoraConfig, apply_lora

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q", "kv", "c_proj", "gate_up_proj"]}


def lora_checkpoint(tmp_path, hf_dir, poison=False):
    path, model, tok = hf_dir
    base, _ = load_hf_checkpoint(path)
    wrapped = apply_lora(base, LoraConfig.from_dict(LORA))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)  # B starts at 0: make the adapters change the model
    state = {k: v.clone() for k, v in wrapped.state_dict().items()}  # merge_and_unload merges in place
    if poison:
        state[next(k for k in state if "lora_B" in k)][0, 0] = float("nan")
    merged = wrapped.merge_and_unload().state_dict()  # peft's own merge: the reference
    step = tmp_path / "run" / "checkpoints" / "step-00000001"
    step.mkdir(parents=True)
    torch.save(state, step / "model.pt")
    (step / "config.yaml").write_text(yaml.safe_dump({"model": model.config.to_dict(), "lora": LORA}))
    tok.save(step / "tokenizer")
    (step / "trainer_state.json").write_text("{}")  # listed in every checkpoint; export does not read it
    write_marker(step)
    return step, merged


def test_a_lora_checkpoint_exports_merged_to_hf_and_gguf(tmp_path, hf_dir):
    step, merged = lora_checkpoint(tmp_path, hf_dir)
    assert export_main([str(tmp_path / "run"), str(tmp_path / "hf")]) == 0
    exported, _ = load_hf_checkpoint(tmp_path / "hf")
    for name, value in exported.state_dict().items():
        torch.testing.assert_close(value, merged[name], atol=1e-6, rtol=0, msg=name)
    assert load_tokenizer(tmp_path / "hf").sha256 == hf_dir[2].sha256
    assert export_main([str(step), str(tmp_path / "m.gguf"), "--format", "gguf", "--dtype", "f32"]) == 0
    tensors = {t.name: np.array(t.data) for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    q = merged["transformer.h.1.attn.q.weight"]  # not centred: the GGUF holds it as merged
    assert not torch.allclose(q, hf_dir[1].state_dict()["transformer.h.1.attn.q.weight"])
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight"], q.numpy(), atol=1e-6)


def test_a_nan_in_an_adapter_stops_the_export(tmp_path, hf_dir, capsys):
    step, _ = lora_checkpoint(tmp_path, hf_dir, poison=True)
    for out, extra in ((tmp_path / "hf", []), (tmp_path / "m.gguf", ["--format", "gguf"])):
        assert export_main([str(step), str(out), *extra]) == 2
        assert "holds NaN or infinite values" in capsys.readouterr().err and not out.exists()


def test_the_checkpoint_its_run_dir_or_its_model_pt_as_output_are_refused(tmp_path, hf_dir, capsys):
    step, _ = lora_checkpoint(tmp_path, hf_dir)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in (step, tmp_path / "run", step.parent, step / "model.pt"):
        assert export_main([str(step), str(out)]) == 2
        err = capsys.readouterr().err
        assert "is not an HF export" in err or "is a file" in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert export_main([str(step), str(step / "m.gguf"), "--format", "gguf"]) == 2
    assert "is inside the trainer checkpoint" in capsys.readouterr().err
