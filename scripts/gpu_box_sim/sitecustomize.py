"""`gpu_check.sh --cpu`: make this Python look like the bare GPU box (see scripts/gpu_env.py).

On PYTHONPATH, Python imports this file at start-up, in every process the check starts (pytest, refact-train, the
benches). Each top-level module named in GPU_CHECK_HIDE becomes absent (`import` fails, `importlib.util.find_spec`
returns None, as for a package that is not installed) unless GPU_CHECK_SITE, the folder the carried wheels were
installed into, holds it: an import the box could not satisfy fails here too.
"""
import os
import sys

_SITE = os.environ.get("GPU_CHECK_SITE") or ""


def _in_site(name: str) -> bool:
    where = os.path.join(_SITE, name)
    return bool(_SITE) and (os.path.isdir(where) or os.path.isfile(where + ".py"))


for _name in filter(None, os.environ.get("GPU_CHECK_HIDE", "").split(",")):
    if not _in_site(_name):
        sys.modules[_name] = None  # the import system's own marker for "this module is absent"
