"""Which tokenizer goes with a model: refact-export / refact-generate given a tokenizer of the same size as the model's
own but another vocabulary. The size check cannot see it; the model then reads and writes other text than it learnt
(refact-generate printed " sublicy fiects A" for "import" before)."""
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from data_pipeline.tokenizer import load_tokenizer, train_bpe
from refact_train.checkpoint import CheckpointError
from refact_train.cli.export import main as export_main
from refact_train.hf.load import EXPORT_RECORD
from refact_train.models import load_model_and_tokenizer, tokenizer_record


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory):
    """A BPE of the same 600 tokens as hf_dir's, trained on other files: other merges, the same special ids."""
    root = Path(sysconfig.get_paths()["stdlib"]) / "email"
    tok = train_bpe([p.read_text() for p in sorted(root.glob("*.py"))], vocab_size=600)
    out = tmp_path_factory.mktemp("other") / "tok"
    tok.save(out)
    return out, tok


def test_export_refuses_a_same_size_tokenizer_of_another_vocabulary(tmp_path, hf_dir, other_tokenizer, capsys):
    path, _, tok = hf_dir
    other, other_tok = other_tokenizer
    assert other_tok.vocab_size == tok.vocab_size and other_tok.sha256 != tok.sha256
    for out, extra in ((tmp_path / "hf", []), (tmp_path / "m.gguf", ["--format", "gguf"])):
        assert export_main([str(path), str(out), "--tokenizer", str(other), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and not out.exists()
        assert f"{other}/tokenizer.json" in err and f"{path}/tokenizer.json" in err, err
        assert "is not the tokenizer" in err and "--allow-other-tokenizer" in err
    # on purpose: shipped, said on stderr
    assert export_main([str(path), str(tmp_path / "hf"), "--tokenizer", str(other), "--allow-other-tokenizer"]) == 0
    assert "used anyway" in capsys.readouterr().err
    assert load_tokenizer(tmp_path / "hf").sha256 == other_tok.sha256


def test_the_same_tokenizer_at_another_path_is_accepted(tmp_path, hf_dir, capsys):
    path, _, tok = hf_dir
    copy = tmp_path / "copy"
    tok.save(copy)  # written again from the loaded tokenizer: the same sha256
    assert export_main([str(path), str(tmp_path / "out"), "--tokenizer", str(copy / "tokenizer.json")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_hf_directory_without_tokenizer_warns_that_the_given_one_is_unchecked(tmp_path, hf_dir, other_tokenizer,
                                                                                  capsys):
    bare = tmp_path / "bare"
    shutil.copytree(hf_dir[0], bare)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (bare / name).unlink()
    # the export still records the tokenizer it shipped: another is refused although tokenizer.json is gone
    assert export_main([str(bare), str(tmp_path / "out"), "--tokenizer", str(other_tokenizer[0])]) == 2
    assert f"{bare}/{EXPORT_RECORD}" in capsys.readouterr().err
    (bare / EXPORT_RECORD).unlink()  # as the release: nothing recorded
    assert export_main([str(bare), str(tmp_path / "out"), "--tokenizer", str(other_tokenizer[0])]) == 0
    err = capsys.readouterr().err
    assert f"warning: {bare} records no tokenizer it was trained with" in err and "unchecked" in err


def test_refact_generate_refuses_another_tokenizer_and_allows_it_when_asked(hf_dir, other_tokenizer):
    exe = [sys.executable, "-m", "refact_train.cli.generate", f"model={hf_dir[0]}", f"tokenizer={other_tokenizer[0]}",
           "prompt=import", "max_new_tokens=4"]
    run = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert "is not the tokenizer" in run.stderr and "allow_other_tokenizer=true" in run.stderr, run.stderr
    run = subprocess.run(exe + ["allow_other_tokenizer=true"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "used anyway" in run.stderr, run.stderr


def test_the_export_writes_its_own_special_tokens_whatever_the_source_files_named(tmp_path, hf_dir):
    """A source whose special_tokens_map / tokenizer_config name other special tokens than its tokenizer.json:
    transformers reads eos from those files, so the export writes them again from the tokenizer (EOT 0, pad 4)."""
    from transformers import AutoTokenizer
    src = tmp_path / "src"
    shutil.copytree(hf_dir[0], src)
    odd = {"eos_token": "</s>", "bos_token": "<s>", "pad_token": "<fim_prefix>"}
    (src / "special_tokens_map.json").write_text(json.dumps(odd))
    config = json.loads((src / "tokenizer_config.json").read_text())
    (src / "tokenizer_config.json").write_text(json.dumps({**config, **odd}))
    assert AutoTokenizer.from_pretrained(src).eos_token == "</s>"  # what transformers made of the source
    assert export_main([str(src), str(tmp_path / "out")]) == 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (0, 0, 4) and len(tok) == 600


def test_an_export_records_its_tokenizer_and_a_tokenizer_json_swapped_in_later_is_refused(tmp_path, hf_dir,
                                                                                          other_tokenizer, capsys):
    path, _, tok = hf_dir
    out = tmp_path / "out"
    assert export_main([str(path), str(out)]) == 0
    assert json.loads((out / EXPORT_RECORD).read_text()) == {"tokenizer_sha256": tok.sha256}
    shutil.copyfile(other_tokenizer[0] / "tokenizer.json", out / "tokenizer.json")  # swapped: same size, other merges
    assert tokenizer_record(out) == (tok.sha256, str(out / EXPORT_RECORD))  # what init_from checks against
    assert export_main([str(out), str(tmp_path / "again")]) == 2  # exit 0 before, shipping the swapped one
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{out}/tokenizer.json" in err and f"{out}/{EXPORT_RECORD}" in err, err
    assert "is not the tokenizer" in err and not (tmp_path / "again").exists()
    with pytest.raises(CheckpointError, match="is not the tokenizer"):
        load_model_and_tokenizer(out)
    assert export_main([str(out), str(tmp_path / "again"), "--tokenizer", str(path)]) == 0  # the right one given
    assert export_main([str(out), str(tmp_path / "again"), "--allow-other-tokenizer"]) == 0  # meant: said
    assert "used anyway" in capsys.readouterr().err


def test_a_directory_transformers_saved_again_loads(tmp_path, hf_dir):
    """save_pretrained writes tokenizer.json again (another sha256: it adds a post-processor) and keeps config.json's
    keys: the record is a file of its own, which it drops, so the re-saved directory is not refused."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path, _, tok = hf_dir
    again = tmp_path / "again"
    AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).save_pretrained(again)
    AutoTokenizer.from_pretrained(path).save_pretrained(again)
    assert not (again / EXPORT_RECORD).exists()
    model, loaded = load_model_and_tokenizer(again)
    assert loaded.encode("import json") == tok.encode("import json")


def test_a_recorded_tokenizer_that_is_not_a_sha256_is_named(tmp_path, hf_dir, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(hf_dir[0], bad)
    for record in ('{"tokenizer_sha256": 5}', "[]", "{"):
        (bad / EXPORT_RECORD).write_text(record)
        assert export_main([str(bad), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{bad}/{EXPORT_RECORD}" in err, err
        assert "not a sha256" in err or "not valid JSON" in err, err


def test_the_gguf_records_the_tokenizer_too(tmp_path, hf_dir):
    import gguf
    assert export_main([str(hf_dir[0]), str(tmp_path / "m.gguf"), "--format", "gguf"]) == 0
    field = gguf.GGUFReader(tmp_path / "m.gguf").fields["refact_train.tokenizer_sha256"]
    assert field.contents() == hf_dir[2].sha256
