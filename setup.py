"""Package list for setuptools (metadata lives in pyproject.toml).

configs/ sits at the top of the repository, as docs/design.md lays out, and is installed as the package
`refact_train.configs` so that the console scripts find their Hydra configs from any working directory,
with an editable install or a plain one.
"""
import os

from setuptools import find_packages, setup

code_packages = find_packages(include=["refact_train*", "data_pipeline*", "evals*"])
config_packages = ["refact_train.configs"] + [
    "refact_train.configs." + os.path.relpath(root, "configs").replace(os.sep, ".")
    for root, _dirs, _files in os.walk("configs")
    if root != "configs" and "__pycache__" not in root
]
setup(
    packages=code_packages + config_packages,
    package_dir={"refact_train.configs": "configs"},
)
