"""Inside the sandbox: limit, drop privileges, load the candidate's module, then answer the checker's calls.

Started by `evals.sandbox` under bubblewrap as `python -I -S -B /sandbox/sandbox_candidate.py CALL_FD ANSWER_FD
SETUP_FD`, with a JSON request on stdin. SETUP_FD gets `ok` or `error ...` and is closed before any candidate code
runs, so the candidate cannot report a sandbox failure (which stops the evaluation). Standard library only (the
project is not importable in the sandbox). It never sees the tests: the checker (`evals/sandbox_checker.py`, a trusted
process) sends `["call", args, kwargs]` on CALL_FD and this side answers `["ok", value]` or `["raise", type name,
message]` on ANSWER_FD, as plain data (`sandbox_wire`). The candidate's code shares this interpreter and may rewrite
anything in it, including these messages: that only changes what it answers, never how the checker judges the answer.
"""
import ctypes
import json
import os
import resource
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox_wire as wire  # noqa: E402  (run as a script with -I: its directory is not on sys.path)

SETUP_FAILED_EXIT = 97
PR_SET_NO_NEW_PRIVS = 38


def apply_limits(limits, extra_processes):
    def cap(res, value):
        resource.setrlimit(res, (value, value))

    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL one second later
    cap(resource.RLIMIT_AS, int(limits["memory_mb"]) << 20)
    cap(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) << 20)
    cap(resource.RLIMIT_NOFILE, int(limits["max_open_files"]))
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NPROC, int(limits["max_processes"]) + int(extra_processes))


def drop_privileges(uid, gid):
    """As root (bubblewrap ran privileged): become the worker slot's own unprivileged uid, for good."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise RuntimeError(f"uid/gid {os.getresuid()}/{os.getresgid()} after dropping to {uid}/{gid}")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError("privileges could be regained after the drop")


def setup(request):
    """Everything before untrusted code runs; an error here is the sandbox's, not the candidate's."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # bubblewrap sets it too
    apply_limits(request["limits"], request["extra_processes"])
    if request["uid"] is not None:
        drop_privileges(request["uid"], request["gid"])


def load(source, entry_point):
    """The candidate's module and its entry point, or the reason there is none."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "candidate.py", "exec"), namespace)
    except BaseException as exc:  # SystemExit too: a module that exits while loading has no entry point
        traceback.print_exc()
        return None, f"loading the candidate raised {type(exc).__name__}: {str(exc)[:500]}"
    function = namespace.get(entry_point)
    if not callable(function):
        return None, f"the candidate defines no function {entry_point!r}"
    return function, None


def serve(function, call_fd, answer_fd, send, receive):
    """Answer calls until the checker closes the channel."""
    while True:
        try:
            kind, values = receive(call_fd)
        except wire.WireError:
            return
        if kind != "call" or len(values) != 2:
            return
        args, kwargs = values
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:  # SystemExit included: the call did not return
            send(answer_fd, "raise", type(exc).__name__, str(exc)[:2000])
            continue
        try:
            send(answer_fd, "ok", result)
        except wire.WireError as err:
            send(answer_fd, "raise", "TypeError", f"{getattr(function, '__name__', 'the candidate')} returned {err}")


def main():
    call_fd, answer_fd, setup_fd = (int(a) for a in sys.argv[1:4])
    send, receive, hard_exit = wire.send, wire.receive, os._exit  # our references, whatever the candidate rebinds
    try:
        request = json.loads(sys.stdin.buffer.read())
        setup(request)
    except Exception as exc:
        os.write(setup_fd, f"error {type(exc).__name__}: {exc}".encode())
        hard_exit(SETUP_FAILED_EXIT)
    os.write(setup_fd, b"ok")
    os.close(setup_fd)
    function, error = load(request["source"], request["entry_point"])
    if function is None:
        send(answer_fd, "load_error", error)
        hard_exit(1)
    send(answer_fd, "ready")
    serve(function, call_fd, answer_fd, send, receive)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    hard_exit(0)


if __name__ == "__main__":
    main()
