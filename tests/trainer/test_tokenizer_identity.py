"""Which tokenizer goes with a model in training: the tokenizer a checkpoint keeps."""
import shutil

from data_pipeline.tokenizer import load_tokenizer
from helpers import train_inprocess
from refact_train.models import load_model_from_checkpoint


def test_a_tokenizer_file_of_any_name_is_kept_where_loaders_look(corpus_dir, tmp_path):
    """tokenizer=FILE was copied under its own name: the checkpoint loaded without a tokenizer, refact-export wrote an
    HF directory without one."""
    mine = tmp_path / "my_tokenizer.json"
    shutil.copy(corpus_dir / "shards" / "tokenizer.json", mine)
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path / 'run'}", "train.max_steps=1",
                     f"tokenizer={mine}"])
    _, tok = load_model_from_checkpoint(tmp_path / "run")
    assert tok is not None and tok.sha256 == load_tokenizer(corpus_dir / "shards").sha256
