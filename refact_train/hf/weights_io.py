"""Reading and writing HF weight files: model.safetensors, sharded safetensors with an index, pytorch_model.bin."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    # weights_only=True: a checkpoint is data, never code to unpickle.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: cannot be read as a tensors-only PyTorch file ({err}); convert it to safetensors") \
            from err


def _load_index(index_path: Path, loader) -> dict[str, torch.Tensor]:
    weight_map = json.loads(index_path.read_text())["weight_map"]
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise FileNotFoundError(f"{index_path} names shard {shard}, which is missing from {index_path.parent}")
        tensors.update(loader(shard_path))
    missing = sorted(set(weight_map) - set(tensors))
    if missing:
        raise KeyError(f"{index_path}: tensors listed in the index but absent from the shards: {missing[:5]}")
    return tensors


def load_weights(directory: Path) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of an HF directory and the name of the file(s) they came from."""
    if (directory / SAFETENSORS).is_file():
        return load_file(str(directory / SAFETENSORS)), SAFETENSORS
    if (directory / SAFETENSORS_INDEX).is_file():
        return _load_index(directory / SAFETENSORS_INDEX, lambda p: load_file(str(p))), SAFETENSORS_INDEX
    if (directory / PYTORCH_BIN).is_file():
        return _load_bin(directory / PYTORCH_BIN), PYTORCH_BIN
    if (directory / PYTORCH_BIN_INDEX).is_file():
        return _load_index(directory / PYTORCH_BIN_INDEX, _load_bin), PYTORCH_BIN_INDEX
    raise FileNotFoundError(
        f"{directory}: no weights found; expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {PYTORCH_BIN} or {PYTORCH_BIN_INDEX}"
    )


def save_weights(tensors: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int) -> list[str]:
    """Write safetensors, sharded with an index when larger than `max_shard_bytes`; returns the files written."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    metadata = {"format": "pt"}
    if total <= max_shard_bytes:
        save_file(tensors, str(directory / SAFETENSORS), metadata=metadata)
        return [SAFETENSORS]
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    files, weight_map = [], {}
    for i, shard in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / fname), metadata=metadata)
        files.append(fname)
        weight_map.update({name: fname for name in shard})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
    return files + [SAFETENSORS_INDEX]
