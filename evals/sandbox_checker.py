"""The trusted side of a sandboxed check: runs the problem's own test code against a proxy of the candidate.

Started by `evals.sandbox` as `python -I -S checker.py CALL_FD ANSWER_FD VERDICT_FD` with a JSON request on stdin:
the problem's trusted `context` (its prompt: imports and helpers such as HumanEval/38's `encode_cyclic` or /32's
`poly`, which the tests call), its `test` (defining `check(candidate)`) and the `entry_point`. It never executes
candidate code: `candidate(*args)` sends the arguments to the sandboxed process (`sandbox_candidate.py`) and turns the
answer back into fresh built-in objects (`sandbox_wire`), so a custom `__eq__`, patched builtins or anything else the
candidate does in its own interpreter cannot reach the comparison. The verdict goes to VERDICT_FD, which only this
process holds.
"""
import builtins
import json
import os
import resource
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox_wire as wire  # noqa: E402  (run as a script with -I: its directory is not on sys.path)


class CandidateGone(BaseException):
    """The candidate stopped answering (died, timed out, broke the protocol): the verdict is a failure even if the
    test code catches this (a bare `except:`), because `Candidate.lost` is checked after `check` returns."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one."""


def rebuild_exception(name: str, message: str) -> Exception:
    """The candidate's exception as a fresh built-in of the same type (tests may expect e.g. ValueError). Not
    StopIteration: raised by `candidate` inside `map(candidate, ...)` it would end the test's iteration early (the
    same reason as PEP 479's rule for generators)."""
    cls = getattr(builtins, name, None)
    ends_iteration = isinstance(cls, type) and issubclass(cls, (StopIteration, StopAsyncIteration))
    if isinstance(cls, type) and issubclass(cls, Exception) and not ends_iteration:
        try:
            return cls(message)
        except Exception:  # a constructor that needs other arguments (UnicodeDecodeError, ...)
            pass
    return CandidateError(f"{name}: {message}")


class Candidate:
    """Stands in for the candidate's function in `check(candidate)`."""

    def __init__(self, call_fd: int, answer_fd: int, deadline: float):
        self.call_fd, self.answer_fd, self.deadline = call_fd, answer_fd, deadline
        self.lost: str | None = None
        self.calls = 0

    def _gone(self, why: str) -> CandidateGone:
        self.lost = self.lost or why
        return CandidateGone(self.lost)

    def __call__(self, *args, **kwargs):
        if self.lost:
            raise self._gone(self.lost)
        self.calls += 1
        try:
            wire.send(self.call_fd, "call", list(args), kwargs)
        except wire.WireError as err:
            raise self._gone(f"harness: the test passes an argument that is not plain data: {err}")
        except OSError as err:
            raise self._gone(f"the candidate's process is gone ({err.strerror})")
        try:
            kind, values = wire.receive(self.answer_fd, self.deadline)
        except (wire.WireError, MemoryError) as err:  # what it sends is its failure, whatever the test catches
            raise self._gone(f"no answer from the candidate: {err}")
        if kind == "ok" and len(values) == 1:
            return values[0]
        if kind == "raise" and len(values) == 2 and all(type(v) is str for v in values):
            raise rebuild_exception(*values)
        raise self._gone(f"malformed answer of kind {kind!r}")


def judge(request: dict, call_fd: int, answer_fd: int) -> dict:
    deadline = time.monotonic() + float(request["timeout_s"])
    namespace = {"__name__": "__main__"}
    exec(compile(request["context"], "prompt.py", "exec"), namespace)  # trusted: the problem's own code
    exec(compile(request["test"], "test.py", "exec"), namespace)
    check = namespace.get("check")
    if not callable(check):
        raise RuntimeError("the problem's test code defines no check(candidate)")
    try:
        kind, values = wire.receive(answer_fd, deadline)
    except (wire.WireError, MemoryError) as err:  # whatever the candidate sends, it is its failure, not ours
        status = "timeout" if "deadline" in str(err) else "killed"
        return {"passed": False, "status": status, "reason": f"the candidate never became ready: {err!r}"[:1000]}
    if kind == "load_error":
        return {"passed": False, "status": "load_error", "reason": str(values[0] if values else "")[:1000]}
    if kind != "ready":
        return {"passed": False, "status": "failed", "reason": f"unexpected first message {kind!r}"}
    candidate = Candidate(call_fd, answer_fd, deadline)
    # as in the one-module harness, a test that names the entry point (HumanEval/33 does) calls the candidate
    namespace[request["entry_point"]] = candidate
    try:
        check(candidate)
        error = None
    except CandidateGone:
        error = None  # candidate.lost says why
    except BaseException as exc:  # AssertionError, and anything the candidate's answers make the test raise
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1000:] or type(exc).__name__
    if candidate.lost:
        status = "timeout" if "deadline" in candidate.lost else "killed"
        return {"passed": False, "status": status, "reason": candidate.lost[:1000], "calls": candidate.calls}
    if error:
        return {"passed": False, "status": "failed", "reason": error, "calls": candidate.calls}
    return {"passed": True, "status": "passed", "reason": "", "calls": candidate.calls}


def main() -> None:
    call_fd, answer_fd, verdict_fd = (int(a) for a in sys.argv[1:4])
    request = json.loads(sys.stdin.buffer.read())
    memory = int(request["memory_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        verdict = judge(request, call_fd, answer_fd)
    except BaseException as exc:
        traceback.print_exc()
        verdict = {"passed": False, "status": "checker_error", "reason": f"{type(exc).__name__}: {exc}"[:1000]}
    os.write(verdict_fd, json.dumps(verdict).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
