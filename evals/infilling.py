"""HumanEval single-line infilling, built from HumanEval as openai/human-eval-infilling did.

One task per non-empty line of each canonical solution: the middle is that line (with its newline), the prefix is the
prompt plus the lines above it, the suffix the lines below. The 164 canonical solutions have exactly 1,033 non-empty
lines, the size of the published set, so `build_single_line_tasks` on the full data asserts that count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from evals.humaneval import Problem
from evals.sandbox import Program

EXPECTED_SINGLE_LINE_TASKS = 1033


@dataclass(frozen=True)
class InfillTask:
    task_id: str  # "HumanEval/0/L3": problem id and the line's index within the canonical solution
    problem: Problem  # its tests (and the prompt's helpers they call) score the filled-in module
    prefix: str
    middle: str
    suffix: str


def build_single_line_tasks(problems: Sequence[Problem], expect_full: bool | None = None) -> list[InfillTask]:
    """Mask each non-empty line of each canonical solution; `prefix + middle + suffix == prompt + solution`."""
    tasks = []
    for problem in problems:
        lines = problem.canonical_solution.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            tasks.append(InfillTask(f"{problem.task_id}/L{i}", problem, prefix=problem.prompt + "".join(lines[:i]),
                                    middle=line, suffix="".join(lines[i + 1:])))
    full = len(problems) == 164 if expect_full is None else expect_full
    if full and len(tasks) != EXPECTED_SINGLE_LINE_TASKS:
        raise ValueError(f"single-line infilling: built {len(tasks)} tasks from {len(problems)} problems, expected "
                         f"{EXPECTED_SINGLE_LINE_TASKS} (openai/human-eval-infilling); is the HumanEval data modified?")
    return tasks


def clean_single_line(completion: str) -> str:
    """A single-line answer: everything up to and including the first newline (added when the model gave none)."""
    return completion.partition("\n")[0] + "\n"


def build_infill_program(task: InfillTask, middle: str) -> Program:
    return task.problem.program(task.prefix + middle + task.suffix)


def exact_match(completion: str, middle: str) -> bool:
    """Same line, indentation included; trailing whitespace and the newline do not count."""
    return completion.rstrip() == middle.rstrip()
