"""refact-export SRC OUT.gguf --format gguf: from an HF directory of either revision; errors before loading."""

import gguf
import numpy as np
from safetensors.torch import save_file

from refact_train.cli.export import main as export_main
from refact_train.hf import to_earlier_names


def tensors(path):
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def test_export_gguf_from_either_revision_gives_the_same_file_contents(tmp_path, hf_dir, capsys):
    path, model, _ = hf_dir
    assert export_main([str(path), str(tmp_path / "cur.gguf"), "--format", "gguf", "--dtype", "f32"]) == 0
    assert "f32, 21 tensors, 640 tokens, pre-tokenizer 'gpt-2'" in capsys.readouterr().out
    old = tmp_path / "old"  # the earlier released layout (attn.k / attn.v, mlp.linear_1 / linear_3)
    old.mkdir()
    (old / "config.json").write_text((path / "config.json").read_text())
    (old / "tokenizer.json").write_text((path / "tokenizer.json").read_text())
    state = to_earlier_names(model.state_dict(), model.config.head_dim, model.config.mlp_hidden)
    save_file({k: v.contiguous() for k, v in state.items()}, str(old / "model.safetensors"))
    assert export_main([str(old), str(tmp_path / "old.gguf"), "--format", "gguf", "--dtype", "float32"]) == 0
    a, b = tensors(tmp_path / "cur.gguf"), tensors(tmp_path / "old.gguf")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_export_gguf_q8_0_and_stored_dtype(tmp_path, hf_dir):
    path, _, _ = hf_dir
    assert export_main([str(path), str(tmp_path / "q.gguf"), "--format", "gguf", "--dtype", "q8_0"]) == 0
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "q.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert export_main([str(path), str(tmp_path / "s.gguf"), "--format", "gguf"]) == 0  # stored: f32 here
    assert gguf.GGUFReader(tmp_path / "s.gguf").fields["general.file_type"].contents() == gguf.LlamaFileType.ALL_F32


def test_export_gguf_errors_before_loading(tmp_path, hf_dir, capsys):
    missing = str(tmp_path / "no_such_model")
    assert export_main([missing, str(tmp_path / "m.gguf"), "--format", "gguf", "--dtype", "q4_k"]) == 2
    assert "'q4_k' is not a GGUF type" in capsys.readouterr().err
    assert export_main([missing, str(tmp_path / "m"), "--format", "gguf"]) == 2
    assert "ends in .gguf" in capsys.readouterr().err
    bare = tmp_path / "bare"  # an HF directory without its tokenizer
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((hf_dir[0] / name).read_bytes())
    assert export_main([str(bare), str(tmp_path / "m.gguf"), "--format", "gguf"]) == 2
    assert "pass --tokenizer" in capsys.readouterr().err
    assert export_main([str(bare), str(tmp_path / "m.gguf"), "--format", "gguf",
                        "--tokenizer", str(hf_dir[0])]) == 0
