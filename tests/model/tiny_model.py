"""The tiny model the model tests attack: a config, and a [2, 7] batch of ids inside its vocabulary."""
import torch

from refact_train.model import RefactConfig


def tiny(**kw) -> RefactConfig:
    base = dict(vocab_size=128, n_embd=64, n_head=4, n_layer=2, n_positions=32)
    base.update(kw)
    return RefactConfig(**base)


IDS = torch.randint(5, 128, (2, 7), generator=torch.Generator().manual_seed(0))
