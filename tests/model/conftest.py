import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tiny_model import tiny  # noqa: E402

from refact_train.model import RefactForCausalLM  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """The tiny model, seeded, in eval mode (dropout off)."""
    torch.manual_seed(0)
    return RefactForCausalLM(tiny()).eval()
