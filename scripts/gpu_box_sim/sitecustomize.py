"""`gpu_check.sh --cpu`: make this Python look like the bare GPU box (see scripts/gpu_env.py).

On PYTHONPATH, Python imports this file at start-up, in every process the check starts (pytest, refact-train, the
benches). Top-level modules named in GPU_CHECK_HIDE are refused unless they come from GPU_CHECK_SITE, the folder the
carried wheels were installed into: an import the box could not satisfy fails here too.
"""
import importlib.abc
import importlib.machinery
import os
import sys

_HIDDEN = {m for m in os.environ.get("GPU_CHECK_HIDE", "").split(",") if m}
_SITE = os.environ.get("GPU_CHECK_SITE") or None


class _BoxHider(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if "." in name or name not in _HIDDEN:
            return None  # submodules follow their (already admitted) parent
        spec = importlib.machinery.PathFinder.find_spec(name, sys.path)
        origin = (spec.origin or next(iter(spec.submodule_search_locations or []), "")) if spec else ""
        if spec is not None and _SITE and os.path.abspath(origin).startswith(os.path.abspath(_SITE) + os.sep):
            return spec
        raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU box; gpu_check.sh --cpu hides it)",
                                  name=name)


if _HIDDEN:
    sys.meta_path.insert(0, _BoxHider())
