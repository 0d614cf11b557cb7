"""A small HF export (random weights, a BPE trained on the stdlib's json package) shared by the CLI tests."""
import sysconfig
from pathlib import Path

import pytest
import torch

from data_pipeline.tokenizer import train_bpe
from refact_train.hf import save_hf_checkpoint
from refact_train.model import RefactConfig, RefactForCausalLM


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """(export directory, the model, its tokenizer)."""
    root = Path(sysconfig.get_paths()["stdlib"]) / "json"
    tok = train_bpe([p.read_text() for p in sorted(root.glob("*.py"))], vocab_size=600)
    torch.manual_seed(0)
    model = RefactForCausalLM(RefactConfig(vocab_size=tok.padded_vocab_size, n_embd=64, n_head=4, n_layer=2,
                                           n_positions=256))
    return save_hf_checkpoint(model, tmp_path_factory.mktemp("m") / "hf", tokenizer=tok), model, tok
