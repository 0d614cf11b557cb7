import pytest

from evals.humaneval import load_problems
from evals.infilling import (EXPECTED_SINGLE_LINE_TASKS, build_infill_program, build_single_line_tasks,
                             clean_single_line, exact_match)
from evals.sandbox import Sandbox, SandboxConfig, SandboxLimits


def test_task_count_and_reconstruction():
    problems = load_problems()
    tasks = build_single_line_tasks(problems)
    assert len(tasks) == EXPECTED_SINGLE_LINE_TASKS == 1033
    for t in tasks:
        p = t.problem
        assert t.prefix + t.middle + t.suffix == p.prompt + p.canonical_solution
        assert t.middle.strip() and t.middle.endswith("\n") and "\n" not in t.middle[:-1]
    assert len({t.task_id for t in tasks}) == len(tasks)


def test_a_modified_set_is_caught():
    problems = load_problems()
    with pytest.raises(ValueError, match="expected 1033"):
        build_single_line_tasks(problems[:-1], expect_full=True)


def test_single_line_cleaning_and_exact_match():
    assert clean_single_line("    return x\n    more\n") == "    return x\n"
    assert clean_single_line("    return x") == "    return x\n"
    assert exact_match("    return x  \n", "    return x\n")
    assert not exact_match("return x\n", "    return x\n")  # indentation counts


def test_true_middles_pass_and_wrong_ones_fail():
    tasks = build_single_line_tasks(load_problems())[::150]  # 7 tasks spread over the set
    sandbox = Sandbox(SandboxConfig(limits=SandboxLimits(timeout_s=10), workers=2))
    results = sandbox.run_many([build_infill_program(t, t.middle) for t in tasks]
                               + [build_infill_program(t, "    raise ValueError('wrong')\n") for t in tasks])
    n = len(tasks)
    assert all(r.passed for r in results[:n]), [r.stderr[-200:] for r in results[:n] if not r.passed]
    assert not any(r.passed for r in results[n:])
