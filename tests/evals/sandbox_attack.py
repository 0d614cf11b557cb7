"""Hostile candidates for the sandbox tests: each returns what its check accepts only if its attack worked."""
import textwrap

from evals.sandbox import Program, SandboxLimits


# The limits of the shared `sandbox` fixture (tests/evals/conftest.py): short, so a hostile program costs seconds.
LIMITS = SandboxLimits(timeout_s=5.0, cpu_s=2, memory_mb=512, max_processes=16, max_file_mb=1, max_open_files=64)


def attack(body: str, expect: str = "'escaped'", setup: str = "") -> Program:
    """`attack()` runs `body`; the trusted check passes only if it returns `expect` (i.e. the attack worked)."""
    return Program(candidate=setup + "def attack():\n" + textwrap.indent(textwrap.dedent(body), "    "),
                   entry_point="attack", context="", test=f"def check(candidate):\n    assert candidate() == {expect}\n")


def assert_contained(result):
    """The attack ran to its end and returned something other than what an escape returns."""
    assert not result.passed and result.status == "failed" and "AssertionError" in result.reason, result
