import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from data_pipeline.tokenizer import train_bpe
from refact_train.cli.export import main as export_main
from refact_train.hf import load_hf_checkpoint, save_hf_checkpoint, to_earlier_names
from refact_train.model import RefactForCausalLM, generate
from refact_train.models import load_model_and_tokenizer, pick_device


def test_export_earlier_revision_to_current(tmp_path, hf_dir):
    _, model, _ = hf_dir
    old = tmp_path / "old"
    old.mkdir()
    cfg = json.loads((hf_dir[0] / "config.json").read_text())
    for key in ("auto_map", "tie_word_embeddings", "ln_f_bias"):
        cfg.pop(key)
    (old / "config.json").write_text(json.dumps(cfg))
    state = to_earlier_names(model.state_dict(), model.config.head_dim, model.config.mlp_hidden)
    save_file({k: v.contiguous() for k, v in state.items()}, str(old / "model.safetensors"))
    assert export_main([str(old), str(tmp_path / "new")]) == 0
    from safetensors import safe_open

    with safe_open(str(tmp_path / "new" / "model.safetensors"), "pt") as f:
        assert "transformer.h.0.attn.kv.weight" in f.keys() and "transformer.h.0.attn.k.weight" not in f.keys()
    again, _ = load_hf_checkpoint(tmp_path / "new")
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)


def test_export_bf16_and_missing_source(tmp_path, hf_dir, capsys):
    assert export_main([str(hf_dir[0]), str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert (tmp_path / "bf16" / "tokenizer.json").is_file()
    assert export_main([str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "no such model directory" in capsys.readouterr().err


def test_refact_generate_modes(hf_dir):
    path, model, tok = hf_dir
    exe = [sys.executable, "-m", "refact_train.cli.generate", f"model={path}", "max_new_tokens=6"]
    plain = subprocess.run(exe + ["prompt=import", "mode=plain"], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    want = tok.decode(generate(model, [tok.encode("import")], 6, vocab_size=tok.vocab_size)[0])
    assert plain.stdout.rstrip("\n") == want
    fim = subprocess.run(exe + ["mode=fim", "prefix='def f('", "suffix='):'"], capture_output=True, text=True, timeout=120)
    assert fim.returncode == 0, fim.stderr
    chat = subprocess.run(exe + ["mode=chat", "prompt=hello"], capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0, chat.stderr
    bad = subprocess.run(exe + ["mode=fim", "prompt=no marker"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "<FILL>" in bad.stderr


def test_refact_generate_never_emits_padding_ids(tmp_path, hf_dir):
    _, model, tok = hf_dir
    heavy = RefactForCausalLM(model.config)
    heavy.load_state_dict(model.state_dict())
    with torch.no_grad():
        heavy.lm_head.weight[tok.vocab_size:] *= 50  # the rows past the tokenizer win every step
    path = save_hf_checkpoint(heavy, tmp_path / "heavy", tokenizer=tok)
    ids = tok.encode("import")
    assert all(i >= tok.vocab_size for i in generate(heavy, [ids], 6)[0])  # decoded to "": an empty answer before
    run = subprocess.run([sys.executable, "-m", "refact_train.cli.generate", f"model={path}", "max_new_tokens=6",
                          "prompt=import", "mode=plain"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    want = generate(heavy, [ids], 6, vocab_size=tok.vocab_size)[0]
    assert run.stdout.rstrip("\n") == tok.decode(want) != ""


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, hf_dir, capsys):
    root = Path(sysconfig.get_paths()["stdlib"]) / "json"
    big = train_bpe([p.read_text() for p in sorted(root.glob("*.py"))], vocab_size=700)  # the model has 640 rows
    big.save(tmp_path / "tok")
    # refact-export shipped it with the model (an HF directory whose ids index past the embedding); refact-generate
    # ran, or hit an IndexError on a prompt with a high id
    assert export_main([str(hf_dir[0]), str(tmp_path / "out"), "--tokenizer", str(tmp_path / "tok")]) == 2
    assert "has 700 tokens, more than the 640 embedding rows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["cuda:99", "mps", "banana", "meta", "0"])
def test_a_device_torch_cannot_use_here_is_named(device):
    # a torch traceback (not compiled with CUDA, no mps, an unknown device string) when the model moved, before
    with pytest.raises(ValueError, match=f"device={device}|device='{device}'"):
        pick_device(device)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees 0 CUDA device"):
            pick_device("cuda")
    assert pick_device("cpu") == "cpu" and pick_device("auto") in ("cpu", "cuda")


def test_refact_generate_options_are_typed(hf_dir):
    from hydra import compose, initialize_config_dir

    from data_pipeline.config import config_dir
    from refact_train.cli.generate import options

    def read(*overrides):
        with initialize_config_dir(config_dir=str(Path(config_dir()) / "generate"), version_base=None):
            return options(compose("generate", overrides=[*overrides]))

    # each was a traceback from the tokenizer or pathlib (or, for system=null, the text "None" sent to the model)
    for override, message in (("prompt=42", "config.prompt: expected a string, got 42"),
                              ("prompt=null", "config.prompt: expected a string, got None"),
                              ("prefix=1", "config.prefix: expected a string or null, got 1"),
                              ("system=null", "config.system: expected a string, got None"),
                              ("max_new_tokens=abc", "config.max_new_tokens: expected an integer, got 'abc'")):
        with pytest.raises(ValueError, match=message):
            read(f"model={hf_dir[0]}", override)
    with pytest.raises(ValueError, match="model= is required"):  # omegaconf's MissingMandatoryValue traceback
        read("prompt=x")
    assert read(f"model={hf_dir[0]}", "prompt='42'").prompt == "42"
    missing = subprocess.run([sys.executable, "-m", "refact_train.cli.generate", "prompt=x"], capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_a_model_path_that_is_a_file_or_an_empty_dir_is_named(tmp_path, hf_dir):
    (tmp_path / "empty").mkdir()
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    # each was "no intact checkpoint under PATH" (for a file: the weights or .gguf given instead of a directory)
    with pytest.raises(ValueError, match="model.safetensors is not a directory: give the HF directory"):
        load_model_and_tokenizer(hf_dir[0] / "model.safetensors")
    with pytest.raises(ValueError, match="m.gguf is not a directory.*a .gguf file is for llama.cpp"):
        load_model_and_tokenizer(tmp_path / "m.gguf")
    with pytest.raises(FileNotFoundError, match="empty: not an HF directory \\(no config.json\\), nor a trainer"):
        load_model_and_tokenizer(tmp_path / "empty")


def test_refact_generate_refuses_a_prompt_that_is_not_utf8(hf_dir):
    run = subprocess.run([sys.executable, "-m", "refact_train.cli.generate", f"model={hf_dir[0]}",
                          b"prompt='a\xff\xfeb'", "max_new_tokens=2"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr  # the tokenizer's TypeError traceback before (exit 1)
    assert "config.prompt: the bytes at character 1 are not UTF-8" in run.stderr


def test_bad_sources_and_outputs_stop_with_one_line_and_keep_what_is_there(tmp_path, hf_dir, capsys):
    import shutil
    src = tmp_path / "src"
    shutil.copytree(hf_dir[0], src)

    def refused(*args) -> str:
        assert export_main([*args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "n_head": 0}))  # a ZeroDivisionError before
    assert "n_head must be >= 1" in refused(str(src), str(tmp_path / "o1"))
    (src / "config.json").write_text("{not json")  # the parser's message alone before, naming no file
    assert f"{src / 'config.json'}: not valid JSON" in refused(str(src), str(tmp_path / "o2"))
    (src / "config.json").write_text(json.dumps(config))
    weights = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(weights[:100])  # safetensors' traceback before
    assert f"{src / 'model.safetensors'}: not a readable safetensors file" in refused(str(src), str(tmp_path / "o3"))
    # An export replaced its output directory whole: a directory of other files was deleted, a file half-written over
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert "is not an HF export" in refused(str(hf_dir[0]), str(mine))
    (tmp_path / "file").write_text("keep me too")
    assert "is a file" in refused(str(hf_dir[0]), str(tmp_path / "file"))
    assert (mine / "notes.txt").read_text() == "keep me" and (tmp_path / "file").read_text() == "keep me too"
    assert not list(tmp_path.glob("*.tmp-export"))
    with pytest.raises(SystemExit) as stop:
        export_main([str(hf_dir[0]), str(tmp_path / "o4"), "--max-shard-gb", "0"])
    assert stop.value.code == 2
    assert export_main([str(hf_dir[0]), str(tmp_path / "o5")]) == 0
    assert export_main([str(hf_dir[0]), str(tmp_path / "o5")]) == 0  # an earlier export is replaced


def test_out_inside_a_checkpoint_or_holding_the_source_is_refused(tmp_path, hf_dir, capsys):
    import shutil
    from refact_train.checkpoint import write_marker
    step = tmp_path / "run" / "checkpoints" / "step-00000003"  # a trainer checkpoint: rotation deletes it whole
    shutil.copytree(hf_dir[0], step)
    write_marker(step)
    for out in (step / "hf", step / "m.gguf"):  # written into the step before
        assert export_main([str(hf_dir[0]), str(out), "--format", out.suffix[1:] or "hf"]) == 2
        assert "is inside the trainer checkpoint" in capsys.readouterr().err and not out.exists()
    outer = tmp_path / "outer"  # an earlier export holding the source: the source was deleted with it
    shutil.copytree(hf_dir[0], outer)
    shutil.copytree(hf_dir[0], outer / "sub")
    assert export_main([str(outer / "sub"), str(outer)]) == 2
    assert "holds the source" in capsys.readouterr().err and (outer / "sub" / "config.json").is_file()
    assert export_main([str(outer), str(outer), "--dtype", "bfloat16"]) == 0  # in place is fine: loaded first
    assert json.loads((outer / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_an_export_killed_midway_is_finished_by_the_rerun(tmp_path, hf_dir, monkeypatch):
    import refact_train.hf.save as save
    out = tmp_path / "out"
    assert export_main([str(hf_dir[0]), str(out)]) == 0
    real_rmtree = save.shutil.rmtree

    def killed_while_removing(path, *args, **kwargs):  # a kill -9 halfway through deleting the earlier export
        (path / "config.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(save.shutil, "rmtree", killed_while_removing)
    with pytest.raises(KeyboardInterrupt):
        export_main([str(hf_dir[0]), str(out), "--dtype", "bfloat16"])
    monkeypatch.setattr(save.shutil, "rmtree", real_rmtree)
    # Before: OUT had lost its config.json, so the rerun refused it ("not an HF export") and the user had to delete it
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    assert export_main([str(hf_dir[0]), str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a GGUF killed midway leaves its temporary (named by the dead process): the rerun removes it, not only renames
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".m.gguf.tmp-{dead.pid}"
    stale.write_bytes(b"half a model")
    assert export_main([str(hf_dir[0]), str(tmp_path / "m.gguf"), "--format", "gguf"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "out"]


def test_saving_an_hf_directory_with_a_tokenizer_larger_than_the_model_is_refused(tmp_path, hf_dir):
    # written before: an HF directory whose tokenizer gives ids the model has no row for (refact-export's own check,
    # in load_model_and_tokenizer, is test_a_tokenizer_larger_than_the_model_is_refused; this is the library call)
    root = Path(sysconfig.get_paths()["stdlib"])
    big = train_bpe([p.read_text() for p in sorted((root / "json").glob("*.py"))] * 2 +
                    [(root / "textwrap.py").read_text()], vocab_size=900)
    with pytest.raises(ValueError, match=f"the tokenizer has {big.vocab_size} tokens but the model only 640"):
        save_hf_checkpoint(hf_dir[1], tmp_path / "o", tokenizer=big)
    assert not (tmp_path / "o").exists()
