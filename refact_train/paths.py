"""Where the Hydra config tree is (implemented in data_pipeline.paths, the bottom layer)."""
from data_pipeline.paths import config_dir  # noqa: F401
