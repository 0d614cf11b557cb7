"""`refact-train key=value ...` (Hydra app over configs/train.yaml) and `refact-train plot RUN_DIR`.

Multi-process: `torchrun --nproc_per_node N -m refact_train.cli.train ...` (or `torchrun ... $(which refact-train) ...`).
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from data_pipeline.shards import ManifestError
from data_pipeline.config import config_dir
from refact_train.checkpoint import CheckpointError
from refact_train.plot import main as plot_main
from refact_train.run_dir import RunDirError
from refact_train.train_config import ConfigError
from refact_train.trainer import NonFiniteLossError, train


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _train_app(cfg: DictConfig) -> None:
    try:
        train(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    except KeyboardInterrupt:  # a second Ctrl-C (the first one stops after the step, with a checkpoint)
        print(f"refact-train: interrupted (a second Ctrl-C), no checkpoint of this step; a rerun with resume=auto "
              f"goes on from the newest one in {cfg.run_dir}/checkpoints, if any", file=sys.stderr)
        sys.exit(130)
    except NonFiniteLossError as e:
        print(f"[train] {e}", file=sys.stderr)
        sys.exit(3)
    # shards, a checkpoint, a config value or a run_dir the run cannot use
    except (ManifestError, CheckpointError, ConfigError, RunDirError) as e:
        print(f"refact-train: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "plot":
        plot_main(sys.argv[2:])
        return
    _train_app()


if __name__ == "__main__":
    main()
