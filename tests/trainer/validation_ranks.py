"""Run under torchrun by test_validation_distributed.py: every rank loads a checkpoint into the backend named by
`dist=...`, evaluates the valid split with the trainer's Validator and writes what it got to OUT/rank-R.json.
With --fim it runs the held-out FIM evaluation instead and also records how many prompts this rank completed.

    torchrun --nproc_per_node 2 tests/trainer/validation_ranks.py OUT [--fim] override ...
"""
import faulthandler
import json
import os
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import refact_train.validation as validation  # noqa: E402
from helpers import TINY, compose  # noqa: E402
from refact_train.trainer import Trainer  # noqa: E402


def main(out: str, overrides: list[str]) -> None:
    fim = overrides[:1] == ["--fim"]
    completed = []  # the prompts this rank's calls of the real generate() completed
    real_generate = validation.generate
    validation.generate = lambda model, prompts, *a, **k: completed.extend(prompts) or real_generate(model, prompts,
                                                                                                      *a, **k)
    # A hang prints every thread's stack (the test's timeout alone would show nothing of where it stopped).
    faulthandler.dump_traceback_later(120, exit=True)
    trainer = Trainer(compose(TINY + overrides[fim:]))
    clean = False
    try:
        trainer.maybe_resume()
        if fim:
            val = {**trainer.validator.heldout_fim(), "completed": len(completed)}
        else:
            val = trainer.validator.evaluate(trainer.backend.model)
        rank = int(os.environ.get("RANK", 0))
        Path(out, f"rank-{rank}.json").write_text(json.dumps({**val, "training_mode": trainer.backend.model.training}))
        clean = True
    except BaseException:
        traceback.print_exc()  # now: a clean close would wait at a barrier for a peer that may be in a collective
        raise
    finally:
        trainer.close(clean)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
