"""On a GPU: bf16 autocast by default, MFU reported, memory in the metrics (skipped without CUDA)."""
import pytest
import torch

from helpers import metrics, train_inprocess


@pytest.mark.gpu
def test_bf16_autocast_training_on_gpu(corpus_dir, tmp_path):
    train_inprocess([f"data.path={corpus_dir}", f"run_dir={tmp_path}", "train.device=cuda", "train.precision=auto",
                     "train.max_steps=4", "checkpoint.every=4", "metrics.peak_flops=1e14"])
    rows = metrics(tmp_path)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["mfu"] is not None and rows[-1]["gpu_max_alloc_gb"] > 0
    sd = torch.load(tmp_path / "checkpoints" / "step-00000004" / "model.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in sd.values())  # fp32 master weights under bf16 autocast
