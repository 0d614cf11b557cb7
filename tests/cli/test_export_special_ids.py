"""The bos / eos / pad ids an export writes are its tokenizer's, whatever the source's config.json says (an init_from
HF directory's, a hand edit): transformers' generate stopped on another token (eos 5), and the GGUF said so too."""
import json
import shutil

import gguf
import torch
from safetensors.torch import load_file, save_file

from data_pipeline.tokenizer import RefactTokenizer
from refact_train.cli.export import main as export_main

IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def odd_source(tmp_path, hf_dir):
    """hf_dir with config ids other than the tokenizer's and an all-zero lm_head: every logit ties, so greedy decoding
    picks token 0, the EOT, at every step."""
    src = tmp_path / "src"
    shutil.copytree(hf_dir[0], src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "bos_token_id": 6, "eos_token_id": 5, "pad_token_id": 7}))
    state = load_file(src / "model.safetensors")
    state["lm_head.weight"] = torch.zeros_like(state["lm_head.weight"])
    save_file(state, src / "model.safetensors")
    return src


def test_hf_export_writes_the_tokenizers_ids_and_transformers_stops_at_the_eot(tmp_path, hf_dir, capsys):
    from transformers import AutoModelForCausalLM
    src = odd_source(tmp_path, hf_dir)
    out = tmp_path / "out"
    assert export_main([str(src), str(out)]) == 0
    err = capsys.readouterr().err
    assert "eos_token_id 5" in err and "pad_token_id 7" in err and "writes the tokenizer's" in err, err
    want = {"bos_token_id": RefactTokenizer.eot_id, "eos_token_id": RefactTokenizer.eot_id,
            "pad_token_id": RefactTokenizer.fim_pad_id}
    for name in ("config.json", "generation_config.json"):
        written = json.loads((out / name).read_text())
        assert {k: written[k] for k in IDS} == want, name
    hf = AutoModelForCausalLM.from_pretrained(str(out), trust_remote_code=True).eval()
    prompt = torch.tensor([[40, 41, 42]])
    got = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6)
    assert got[0, 3:].tolist() == [RefactTokenizer.eot_id]  # stopped at the EOT (six EOTs before: eos was 5)


def test_an_export_of_matching_ids_says_nothing(tmp_path, hf_dir, capsys):
    assert export_main([str(hf_dir[0]), str(tmp_path / "out")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_gguf_export_writes_the_tokenizers_ids(tmp_path, hf_dir, capsys):
    src = odd_source(tmp_path, hf_dir)
    assert export_main([str(src), str(tmp_path / "m.gguf"), "--format", "gguf", "--dtype", "f32"]) == 0
    assert "eos_token_id 5" in capsys.readouterr().err
    fields = gguf.GGUFReader(tmp_path / "m.gguf").fields
    keys = gguf.Keys.Tokenizer
    got = [fields[key].contents() for key in (keys.BOS_ID, keys.EOS_ID, keys.PAD_ID)]
    assert got == [RefactTokenizer.eot_id, RefactTokenizer.eot_id, RefactTokenizer.fim_pad_id]
