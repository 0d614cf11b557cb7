"""Which tokenizer goes with a model in training: init_from an HF directory or a checkpoint, and resume, with shards of
another tokenizer of the same size (all three trained on silently before); the tokenizer a checkpoint keeps, and what
an older checkpoint saved without one is checked against."""
import shutil
import sysconfig
from pathlib import Path

import pytest

from data_pipeline.tokenizer import load_tokenizer
from helpers import train_inprocess
from refact_train.checkpoint import CheckpointError, write_marker
from refact_train.cli.export import main as export_main
from refact_train.models import load_model_and_tokenizer, load_model_from_checkpoint
from trainer_corpus import write_corpus


def load_tokenizer_sha(corpus: Path) -> str:
    return load_tokenizer(corpus / "shards").sha256


@pytest.fixture(scope="module")
def other_corpus(corpus_dir, tmp_path_factory):
    """Shards of other documents, tokenized with a BPE of the same 768 tokens as corpus_dir's, trained on them."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = [p.read_text() for p in sorted((root / "json").glob("*.py")) + sorted((root / "email").glob("*.py"))]
    return write_corpus(tmp_path_factory.mktemp("other"), docs=docs)


@pytest.fixture(scope="module")
def run_a(corpus_dir, tmp_path_factory):
    """A one-step run on corpus_dir and its HF export."""
    run = tmp_path_factory.mktemp("a") / "run"
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={run}", "train.max_steps=2", "train.stop_after=1"])
    assert export_main([str(run), str(run.parent / "hf")]) == 0
    return run


def test_init_from_a_model_of_another_tokenizer_is_refused_naming_both(run_a, other_corpus, tmp_path):
    for source, own in ((run_a.parent / "hf", run_a.parent / "hf" / "tokenizer.json"),
                        (run_a, run_a / "checkpoints" / "step-00000001" / "tokenizer" / "tokenizer.json")):
        with pytest.raises(CheckpointError) as err:
            train_inprocess([f"data.path={other_corpus}", f"run_dir={tmp_path / 'b'}", f"init_from={source}",
                             "train.max_steps=1"])
        message = str(err.value)
        assert f"{other_corpus}/shards/tokenizer.json" in message and str(own) in message, message
        assert "allow_other_tokenizer=true" in message and "\n" not in message
        assert not (tmp_path / "b" / "checkpoints").exists()


def test_init_from_another_tokenizer_runs_when_asked(run_a, other_corpus, tmp_path, capsys):
    train_inprocess([f"data.path={other_corpus}", f"run_dir={tmp_path / 'b'}", f"init_from={run_a.parent / 'hf'}",
                     "train.max_steps=1", "allow_other_tokenizer=true"])
    assert "used anyway, as allow_other_tokenizer=true says" in capsys.readouterr().err
    _, tok = load_model_from_checkpoint(tmp_path / "b")  # the checkpoint keeps the tokenizer it now trains with
    assert tok.sha256 == load_tokenizer_sha(other_corpus)


def test_resume_on_shards_of_another_tokenizer_is_refused(run_a, other_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_a, run)
    with pytest.raises(CheckpointError, match=r"is not the tokenizer .*step-00000001 was trained with .*tokenizer/"
                                              r"tokenizer.json"):
        train_inprocess([f"data.path={other_corpus}", f"run_dir={run}", "train.max_steps=2"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001"]


def test_a_tokenizer_file_of_any_name_is_kept_where_loaders_look(corpus_dir, tmp_path):
    """tokenizer=FILE was copied under its own name: the checkpoint loaded without a tokenizer, refact-export wrote an
    HF directory without one."""
    mine = tmp_path / "my_tokenizer.json"
    shutil.copy(corpus_dir / "shards" / "tokenizer.json", mine)
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path / 'run'}", "train.max_steps=1",
                     f"tokenizer={mine}"])
    _, tok = load_model_from_checkpoint(tmp_path / "run")
    assert tok is not None and tok.sha256 == load_tokenizer_sha(corpus_dir)


def test_a_checkpoint_saved_without_tokenizer_is_checked_against_its_shards_or_warns(run_a, corpus_dir, other_corpus,
                                                                                      tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(run_a, old)
    ckpt = old / "checkpoints" / "step-00000001"
    shutil.rmtree(ckpt / "tokenizer")  # as written before checkpoints kept the tokenizer
    (ckpt / "COMPLETE.json").unlink()
    write_marker(ckpt)
    assert load_model_from_checkpoint(old)[1] is None
    with pytest.raises(ValueError, match=rf"is not the tokenizer {old} was trained with "
                                         rf"\({corpus_dir}/shards/manifest.json"):
        load_model_and_tokenizer(old, other_corpus / "shards")
    assert load_model_and_tokenizer(old, corpus_dir / "shards")[1].sha256 == load_tokenizer_sha(corpus_dir)
    assert "warning" not in capsys.readouterr().err
    config = (ckpt / "config.yaml").read_text().replace(str(corpus_dir), str(tmp_path / "moved"))
    (ckpt / "config.yaml").write_text(config)  # its shards are gone: nothing left to check against
    (ckpt / "COMPLETE.json").unlink()
    write_marker(ckpt)
    load_model_and_tokenizer(old, other_corpus / "shards")
    assert f"warning: {old} records no tokenizer it was trained with" in capsys.readouterr().err
