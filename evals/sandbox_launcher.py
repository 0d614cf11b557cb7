"""The first code that runs inside a sandbox subprocess: isolate, pre-import, limit, drop privileges, then run.

Started by `evals.sandbox` as `python -I -S sandbox_launcher.py VERDICT_FD` with a JSON request on stdin.
Standard library only: it runs before the project is importable and after privileges are gone.

The verdict protocol: the launcher writes one `setup {...}` line to the verdict pipe before any untrusted code runs,
and `pass NONCE` only after the whole program (solution + tests + `check(...)`) returned without raising. The nonce
arrives on stdin and never reaches the program's globals, argv or environment, so printing, `sys.exit(0)` or
`os._exit(0)` before the asserts cannot produce a pass. (Code that deliberately digs the nonce out of interpreter
memory could; containment, not this protocol, is the security boundary.)
"""
import ast
import ctypes
import json
import os
import resource
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_NO_NEW_PRIVS = 38
SETUP_FAILED_EXIT = 97  # the parent treats this code as a sandbox bug, never as a program failure
# Importing these has side effects beyond defining names (browser, printing, GUI).
NEVER_PREIMPORT = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__hello__", "__phello__"}


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _unshare(flags):
    if _libc().unshare(flags) != 0:
        return os.strerror(ctypes.get_errno())
    return None


def _mount_private_tmp(dirs, size_mb):
    """Cover the world-writable directories with fresh tmpfs mounts visible only in this mount namespace."""
    libc = _libc()
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return [], "mount --make-rprivate /: " + os.strerror(ctypes.get_errno())
    covered = []
    for d in dirs:
        if not os.path.isdir(d) or os.path.islink(d):
            continue
        opts = f"size={size_mb}m,mode=1777".encode()
        if libc.mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
            return covered, f"mount tmpfs on {d}: " + os.strerror(ctypes.get_errno())
        covered.append(d)
    return covered, None


def isolate(request):
    """New network (and mount) namespace where the kernel allows it; returns what was achieved and why not."""
    status = {"network": False, "private_tmp": [], "reasons": []}
    want_net, want_tmp = request["network_namespace"], request["private_tmp"]
    if os.geteuid() != 0:
        if want_net:  # unprivileged: a user namespace lets us own a network namespace
            err = _unshare(CLONE_NEWUSER | CLONE_NEWNET)
            status["network"] = err is None
            if err:
                status["reasons"].append(f"unshare(user+net) as non-root: {err}")
        return status
    if want_net:
        err = _unshare(CLONE_NEWNET)
        status["network"] = err is None
        if err:
            status["reasons"].append(f"unshare(net): {err}")
    if want_tmp:
        err = _unshare(CLONE_NEWNS)
        if err:
            status["reasons"].append(f"unshare(mount): {err}")
        else:
            status["private_tmp"], err = _mount_private_tmp(request["private_tmp_dirs"], request["private_tmp_mb"])
            if err:
                status["reasons"].append(err)
    return status


def stdlib_imports(source):
    """Top-level standard-library modules the program imports (imported here while the files are still readable)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    tops = {n: n.split(".")[0] for n in names}
    return sorted(n for n, top in tops.items() if top in sys.stdlib_module_names and top not in NEVER_PREIMPORT)


def preimport(modules):
    for name in modules:
        try:
            __import__(name)
        except Exception:  # the program will meet the same error itself and fail
            pass


def own_process_count(uid):
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def apply_limits(limits, drop_to_uid):
    def cap(res, value):
        resource.setrlimit(res, (value, value))

    cpu = int(limits["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL one second later
    cap(resource.RLIMIT_AS, int(limits["memory_mb"]) << 20)
    cap(resource.RLIMIT_FSIZE, int(limits["max_file_mb"]) << 20)
    cap(resource.RLIMIT_NOFILE, int(limits["max_open_files"]))
    cap(resource.RLIMIT_CORE, 0)
    nproc = int(limits["max_processes"])
    if drop_to_uid is None:  # RLIMIT_NPROC counts every process of the real uid: leave room for the user's own
        nproc += own_process_count(os.getuid())
    cap(resource.RLIMIT_NPROC, nproc)


def drop_privileges(uid, gid):
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError(f"still uid {os.getuid()}/{os.geteuid()} after setresuid({uid})")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError("privileges could be regained after the drop")


def main():
    verdict_fd = int(sys.argv[1])
    os.set_inheritable(verdict_fd, False)
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    nonce = request.pop("nonce").encode()
    source = request.pop("source")
    try:
        status = isolate(request)
        if "/tmp" in status["private_tmp"]:
            os.chdir("/tmp")  # work in the fresh, size-capped tmpfs rather than on the host's disk
        preimport(list(request["preimport"]) + stdlib_imports(source))
        uid = request["uid"]
        apply_limits(request["limits"], uid)
        _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid binaries cannot raise privileges again
        if uid is not None:
            drop_privileges(uid, request["gid"])
        status["uid"] = os.getuid()
        os.write(verdict_fd, b"setup " + json.dumps(status).encode() + b"\n")
    except Exception as exc:
        os.write(verdict_fd, b"setup-error " + json.dumps(f"{type(exc).__name__}: {exc}").encode() + b"\n")
        os._exit(SETUP_FAILED_EXIT)

    # Keep our own references: the program may rebind names in the os and sys modules it shares with us.
    write, hard_exit, stdout, stderr = os.write, os._exit, sys.stdout, sys.stderr
    program_globals = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "program.py", "exec"), program_globals)
    except BaseException as exc:  # SystemExit included: exiting before the asserts is a failure
        try:
            if isinstance(exc, SystemExit):
                stderr.write(f"program called sys.exit({exc.code!r}) before finishing\n")
            else:
                traceback.print_exc(file=stderr)
            stderr.flush()
        finally:
            hard_exit(1)
    try:
        stdout.flush()
        stderr.flush()
    except Exception:
        pass
    write(verdict_fd, b"pass " + nonce + b"\n")
    hard_exit(0)


if __name__ == "__main__":
    main()
