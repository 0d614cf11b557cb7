"""Where the Hydra config tree is, for an editable install (source checkout) and for a plain install."""
from __future__ import annotations

import importlib.resources
from pathlib import Path


def config_dir() -> str:
    """Absolute path of the `configs/` tree that the console scripts compose their configs from."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():  # editable install or running from the repository
        return str(checkout)
    installed = importlib.resources.files("refact_train.configs")  # wheel: configs/ packaged as refact_train.configs
    return str(Path(str(installed)))
