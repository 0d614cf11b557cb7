"""Values an export must not hand on: NaN / inf weights (a diverged run) and weights beyond float16's range (written
as inf by --dtype float16 / f16), each exported with exit 0 before; --max-shard-gb inf (an OverflowError traceback);
an output path that cannot be written (an OSError traceback)."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from refact_train.cli.export import main as export_main


def with_weight(tmp_path, hf_dir, name, index, value):
    src = tmp_path / "src"
    shutil.copytree(hf_dir[0], src, dirs_exist_ok=True)
    state = load_file(src / "model.safetensors")
    state[name][index] = value
    save_file(state, src / "model.safetensors")
    return src


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_diverged_model_is_not_exported(tmp_path, hf_dir, capsys, value):
    src = with_weight(tmp_path, hf_dir, "lm_head.weight", (3, 5), value)
    for out, extra in ((tmp_path / "hf", []), (tmp_path / "m.gguf", ["--format", "gguf", "--dtype", "q8_0"])):
        assert export_main([str(src), str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == ("refact-export: lm_head.weight holds NaN or infinite values (the training diverged): export an "
                       "earlier checkpoint"), err
        assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_weights_beyond_float16_are_not_written_as_inf(tmp_path, hf_dir, capsys):
    src = with_weight(tmp_path, hf_dir, "transformer.h.0.attn.q.weight", (0, 0), 1e6)
    assert export_main([str(src), str(tmp_path / "hf"), "--dtype", "float16"]) == 2
    err = capsys.readouterr().err.strip()
    assert "transformer.h.0.attn.q.weight has values beyond the range of float16" in err and "bfloat16" in err, err
    assert export_main([str(src), str(tmp_path / "m.gguf"), "--format", "gguf", "--dtype", "f16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refact-export: blk.0.attn_q.weight has values beyond the range of f16") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
    assert export_main([str(src), str(tmp_path / "hf"), "--dtype", "bfloat16"]) == 0
    assert torch.isfinite(load_file(tmp_path / "hf" / "model.safetensors")["transformer.h.0.attn.q.weight"]).all()
    assert export_main([str(src), str(tmp_path / "m.gguf"), "--format", "gguf", "--dtype", "bf16"]) == 0


def test_an_infinite_shard_size_is_a_usage_error(tmp_path, hf_dir, capsys):
    with pytest.raises(SystemExit) as stop:
        export_main([str(hf_dir[0]), str(tmp_path / "o"), "--max-shard-gb", "inf"])
    assert stop.value.code == 2 and "--max-shard-gb must be a number of GB > 0, got inf" in capsys.readouterr().err


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, hf_dir, capsys):
    (tmp_path / "afile").write_text("keep me")
    for out, extra in ((tmp_path / "afile" / "out", []), (tmp_path / "afile" / "x" / "m.gguf", ["--format", "gguf"])):
        assert export_main([str(hf_dir[0]), str(out), *extra]) == 2  # NotADirectoryError traceback after the load
        err = capsys.readouterr().err.strip()
        assert err == f"refact-export: {out}: {tmp_path / 'afile'} is a file, so nothing can be written under it; " \
                      f"choose another output path", err
    for out, extra in ((tmp_path / ("x" * 300), []), (tmp_path / ("x" * 300 + ".gguf"), ["--format", "gguf"])):
        assert export_main([str(hf_dir[0]), str(out), *extra]) == 2  # an OSError traceback before
        err = capsys.readouterr().err.strip()
        assert err.startswith("refact-export: [Errno 36] File name too long") and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == "keep me"
