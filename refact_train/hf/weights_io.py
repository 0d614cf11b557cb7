"""Reading HF weight files: model.safetensors, sharded safetensors with an index, pytorch_model.bin (writing is
huggingface_hub's save_torch_state_dict)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: cannot be read as a tensors-only PyTorch file ({err}); convert it to safetensors") \
            from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        held = f"a dict with keys {sorted(map(str, state))[:5]}" if isinstance(state, dict) else \
            f"a {type(state).__name__}"
        raise ValueError(f"{path}: holds {held}, not a state dict (tensor names to tensors); save the model's "
                         f"state_dict() itself")
    return state


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors' own error type names no file: re-raised with it
        raise ValueError(f"{path}: not a readable safetensors file ({err}); export or download it again") from err


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError, and text that is not UTF-8
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _load_index(index_path: Path, loader) -> dict[str, torch.Tensor]:
    index = read_json(index_path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index_path}: not a shard index (a JSON object whose weight_map maps each tensor name to "
                         f"its shard file); export or download it again")
    for shard in set(weight_map.values()):  # a path would read weights from outside the directory
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise ValueError(f"{index_path} names shard {shard!r}, which is not a file name in its directory; "
                             f"an index names its shards by file name only")
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index_path} names shard {shard}, which is missing from {index_path.parent}")
        tensors.update(loader(shard_path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise ValueError(f"{index_path}: tensors listed in the index but absent from the shards: {missing[:5]}")
    return tensors


def load_weights(directory: Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of an HF directory and the name of the file(s) they came from."""
    if (directory / SAFETENSORS).is_file():
        return _load_safetensors(directory / SAFETENSORS), SAFETENSORS
    if (directory / SAFETENSORS_INDEX).is_file():
        return _load_index(directory / SAFETENSORS_INDEX, _load_safetensors), SAFETENSORS_INDEX
    if (directory / PYTORCH_BIN).is_file():
        return _load_bin(directory / PYTORCH_BIN), PYTORCH_BIN
    if (directory / PYTORCH_BIN_INDEX).is_file():
        return _load_index(directory / PYTORCH_BIN_INDEX, _load_bin), PYTORCH_BIN_INDEX
    raise FileNotFoundError(
        f"{directory}: no weights found; expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {PYTORCH_BIN} or {PYTORCH_BIN_INDEX}"
    )
