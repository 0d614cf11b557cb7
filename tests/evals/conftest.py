"""Fixtures of the evals tests: a tiny exported model (random weights, a BPE tokenizer trained with train_bpe on a
small corpus, written by save_hf_checkpoint) and a pipeline output dir (documents -> build_shards: heldout/,
shards/)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_pipeline.mixing import HoldoutConfig
from data_pipeline.records import Document, write_documents
from data_pipeline.tokenization import build_shards
from data_pipeline.tokenizer import train_bpe
from evals.humaneval import load_problems
from evals.sandbox import Sandbox, SandboxConfig
from refact_train.hf import save_hf_checkpoint
from refact_train.model import RefactForCausalLM
from refact_train.models import load_model_config
from sandbox_attack import LIMITS  # tests/evals is on sys.path (no package)


def corpus() -> list[str]:
    """HumanEval prompts and solutions: a small code corpus the tokenizer can learn from."""
    return [p.prompt + p.canonical_solution for p in load_problems()]


def build_tiny_model(out_dir: Path, n_layer: int = 2, n_embd: int = 64, n_positions: int = 512) -> Path:
    tokenizer = train_bpe(corpus(), vocab_size=512, min_frequency=2)
    torch.manual_seed(0)
    config = load_model_config("tiny", vocab_size=tokenizer.padded_vocab_size, n_layer=n_layer, n_embd=n_embd,
                               n_head=4, n_positions=n_positions)
    model = RefactForCausalLM(config)
    return save_hf_checkpoint(model, out_dir, tokenizer=tokenizer)


def build_pipeline_dir(out_dir: Path, tokenizer, n_docs: int = 24) -> Path:
    """DIR/documents/*.parquet, then token shards with a valid split and DIR/heldout/ records (the real builder)."""
    texts = corpus()[:n_docs]
    docs = [Document(id=f"doc{i}", text=t, kind="code", lang="python", source="humaneval", path=f"src/f{i}.py")
            for i, t in enumerate(texts)]
    shard = out_dir / "documents" / "part-00000.parquet"
    write_documents(shard, docs)
    build_shards([shard], out_dir, tokenizer, holdout_cfg=HoldoutConfig(fraction=0.5))
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("evals") / "tiny-model")


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory, tiny_model_dir) -> Path:
    from data_pipeline.tokenizer import load_tokenizer

    return build_pipeline_dir(tmp_path_factory.mktemp("evals") / "pipeline", load_tokenizer(tiny_model_dir))


@pytest.fixture()
def one_thread():
    """Torch on one thread: on the shared 2-core box, spinning intra-op threads are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sandbox():
    """A 2-worker sandbox with the quick LIMITS, shared by a test module."""
    box = Sandbox(SandboxConfig(limits=LIMITS, workers=2))
    yield box
    box.close()
