"""The project's tokenizer (byte-level BPE with the Refact special tokens).

The implementation lives in `data_pipeline.tokenizer` because the pipeline trains and applies it and must not import
`refact_train` (docs/design.md, layering); this module is the trainer-side name for the same API.
"""
from data_pipeline.tokenizer import (  # noqa: F401
    SPECIAL_TOKENS,
    RefactTokenizer,
    load_tokenizer,
    padded_vocab_size,
    train_bpe,
)
