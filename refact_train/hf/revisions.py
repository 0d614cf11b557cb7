"""Weight names of the two released revisions of Refact-1.6B, mapped onto the current one (docs/refact_1_6b.md).

Current:  attn.q, attn.kv (rows 0..D-1 = K, D..2D-1 = V), mlp.gate_up_proj (gate rows first), mlp.c_proj, ln_f at the top.
Earlier:  attn.k, attn.v, mlp.linear_1 (gate), mlp.linear_3 (up); one revision's ln_f carries a bias.
"""
from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
_FUSED = {
    # current name: (earlier names, in the order they are stacked along dim 0)
    "attn.kv.weight": ("attn.k.weight", "attn.v.weight"),
    "mlp.gate_up_proj.weight": ("mlp.linear_1.weight", "mlp.linear_3.weight"),
}
_ALIASES = {"transformer.ln_f.weight": "ln_f.weight", "transformer.ln_f.bias": "ln_f.bias"}


def detect_revision(state_dict: dict[str, torch.Tensor]) -> str:
    """"fused" (current), "split" (earlier) or "unknown"."""
    keys = state_dict.keys()
    if any(k.endswith("attn.kv.weight") or k.endswith("mlp.gate_up_proj.weight") for k in keys):
        return "fused"
    if any(k.endswith("attn.k.weight") or k.endswith("mlp.linear_1.weight") for k in keys):
        return "split"
    return "unknown"


def to_current_names(state_dict: dict[str, torch.Tensor], source: str = "<state dict>") -> dict[str, torch.Tensor]:
    """Return a state dict with current-revision names; split K/V and gate/up tensors are concatenated."""
    out: dict[str, torch.Tensor] = {}
    pending: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    split_names = {name: fused for fused, names in _FUSED.items() for name in names}
    for key, tensor in state_dict.items():
        key = _ALIASES.get(key, key)
        m = _LAYER.match(key)
        if m and m.group(2) in split_names:
            fused = split_names[m.group(2)]
            pending.setdefault((m.group(1), fused), {})[m.group(2)] = tensor
        else:
            out[key] = tensor
    for (layer, fused), parts in pending.items():
        names = _FUSED[fused]
        missing = [n for n in names if n not in parts]
        if missing:
            raise ValueError(
                f"{source}: layer {layer} has {sorted(parts)} but not {missing}; an earlier-revision checkpoint needs "
                f"both {names[0]} and {names[1]} to build transformer.h.{layer}.{fused}"
            )
        out[f"transformer.h.{layer}.{fused}"] = torch.cat([parts[n] for n in names], dim=0)
    return out


def to_earlier_names(state_dict: dict[str, torch.Tensor], head_dim: int, mlp_hidden: int) -> dict[str, torch.Tensor]:
    """The inverse mapping, for writing test checkpoints in the earlier layout."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        m = _LAYER.match(key)
        if m and m.group(2) in _FUSED:
            first, second = _FUSED[m.group(2)]
            split = head_dim if m.group(2).startswith("attn") else mlp_hidden
            out[f"transformer.h.{m.group(1)}.{first}"] = tensor[:split].clone()
            out[f"transformer.h.{m.group(1)}.{second}"] = tensor[split:].clone()
        else:
            out[key] = tensor
    return out
