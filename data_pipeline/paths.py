"""Where the Hydra config tree is, for an editable install (source checkout) and for a plain install.

It lives in data_pipeline, the bottom layer, so that every command (refact-pipeline included) finds `configs/`
without importing the trainer; `refact_train.paths` re-exports it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def config_dir() -> str:
    """Absolute path of the `configs/` tree that the console scripts compose their configs from."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():  # editable install or running from the repository
        return str(checkout)
    # A wheel installs configs/ as the data-only package refact_train.configs (see setup.py).
    spec = importlib.util.find_spec("refact_train.configs")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("refact-train's configs/ folder is missing from this installation; reinstall the package")
    return str(Path(list(spec.submodule_search_locations)[0]))
