"""The evaluator's model-side paths on CUDA agree with CPU (skipped without a GPU)."""
import numpy as np
import pytest
import torch

from evals.generation import BatchGenerator, GenerationConfig
from evals.perplexity import window_nll
from refact_train.hf import load_hf_checkpoint


@pytest.mark.gpu
def test_generation_and_perplexity_on_cuda_match_cpu(tiny_model_dir):
    cpu, _ = load_hf_checkpoint(tiny_model_dir)
    gpu, _ = load_hf_checkpoint(tiny_model_dir, device="cuda")
    prompts = [[5, 6, 7], [8] * 11, [9, 10, 11, 12]]
    cfg = GenerationConfig(batch_size=2, max_new_tokens=8)
    assert BatchGenerator(gpu, cfg).run(prompts, [0]) == BatchGenerator(cpu, cfg).run(prompts, [0])
    windows = [np.random.default_rng(0).integers(19, 300, size=n) for n in (17, 30)]
    nll_cpu, _ = window_nll(cpu, windows, batch_size=2, device="cpu")
    nll_gpu, _ = window_nll(gpu, windows, batch_size=2, device=torch.device("cuda"))
    assert abs(nll_cpu - nll_gpu) <= 1e-3 * nll_cpu
