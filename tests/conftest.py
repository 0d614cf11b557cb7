"""Shared pytest set-up: CPU-only by default, GPU tests skipped without CUDA."""
import os
import sys
from pathlib import Path

import pytest

# tools/ (not library code, so not installed) is imported from the repository root, also under a bare `pytest`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Tests must never reach a hub or wandb's servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def pytest_collection_modifyitems(config, items):
    # the marker, not `item.keywords`: keywords hold the parent folders' names too (a checkout in a folder "gpu")
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # no torch import at collection when no GPU test is selected (it costs seconds)
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in gpu_items:
        item.add_marker(skip_gpu)
