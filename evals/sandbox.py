"""Execute untrusted (model-written) Python programs, each in its own limited, isolated subprocess.

Per program: a fresh temporary directory (the private tmpfs /tmp when namespaces work); wall-clock timeout, CPU-time,
address-space, process-count, file-size and open-file limits; a scrubbed environment; a new network namespace and
private tmpfs over the world-writable directories where the kernel allows it; as root, a drop to an unprivileged uid
of its own (one per worker slot, so that RLIMIT_NPROC binds and every leftover process of the run can be found and
killed). The child-side steps live in `evals/sandbox_launcher.py`; this module starts it, enforces the wall clock,
cleans up and reads the verdict.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("sandbox_launcher.py")
SETUP_FAILED_EXIT = 97  # mirrors sandbox_launcher.SETUP_FAILED_EXIT
OUTPUT_TAIL_CHARS = 2000


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): results would be meaningless, so evaluation stops."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock, enforced by the parent
    cpu_s: int = 10
    memory_mb: int = 1024  # RLIMIT_AS per process
    max_processes: int = 32  # RLIMIT_NPROC for the sandbox uid
    max_file_mb: int = 16  # RLIMIT_FSIZE
    max_open_files: int = 64


@dataclass(frozen=True)
class SandboxConfig:
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    workers: int = 0  # 0: one per CPU core
    network_namespace: bool = True
    private_tmp: bool = True
    private_tmp_dirs: tuple[str, ...] = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
    private_tmp_mb: int = 64
    uid_base: int = 64200  # as root, each worker slot runs as a uid of its own from [uid_base, uid_base + uid_count)
    uid_count: int = 256  # uids of accounts are skipped; a lock file per uid keeps concurrent sandboxes apart
    python: str = sys.executable
    python_flags: tuple[str, ...] = ("-I", "-S")
    # Imported before privileges are dropped (as root the interpreter's files may be unreadable afterwards).
    preimport: tuple[str, ...] = ("math", "re", "string", "collections", "itertools", "functools", "heapq",
                                  "bisect", "typing", "hashlib", "random", "statistics", "fractions", "decimal",
                                  "encodings.idna")

    @classmethod
    def from_dict(cls, d: dict | None) -> "SandboxConfig":
        d = dict(d or {})
        limits = SandboxLimits(**dict(d.pop("limits", {}) or {}))
        for key in ("private_tmp_dirs", "python_flags", "preimport"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("python") in (None, ""):
            d.pop("python", None)
        return cls(limits=limits, **d)


@dataclass
class ExecutionResult:
    passed: bool
    status: str  # passed | failed | timeout | killed | no_verdict
    exit_code: int | None
    duration_s: float
    stdout: str = ""
    stderr: str = ""
    isolation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _clean_env() -> dict[str, str]:
    """Nothing inherited: no tokens, keys or proxies reach the program."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": "/nonexistent",
            "TMPDIR": "/tmp"}


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4 * OUTPUT_TAIL_CHARS))
            return f.read().decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
    except OSError:
        return ""


def _processes_of_uid(uid: int) -> dict[int, str]:
    """pid -> state letter ("Z" for a zombie) of every process whose /proc entry belongs to uid."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    with open(f"/proc/{entry}/stat") as f:
                        found[int(entry)] = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                pass
    return found


def _reap(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child: its real parent reaps it
        return False


def become_subreaper() -> None:
    """Orphans of sandboxed programs are re-parented to us (not to an init that may never reap them), so that
    `kill_uid` can reap their zombies, which otherwise keep counting against the slot's process limit."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("sandbox: prctl(PR_SET_CHILD_SUBREAPER) failed; zombies of killed programs may linger")


def kill_uid(uid: int, rounds: int = 100) -> int:
    """SIGKILL and reap every process of a sandbox uid (forked children that left the process group included)."""
    killed = 0
    for _ in range(rounds):
        alive = {pid: state for pid, state in _processes_of_uid(uid).items() if not (state == "Z" and _reap(pid))}
        unreapable_zombies = {pid for pid, state in alive.items() if state == "Z"}
        if len(alive) == len(unreapable_zombies):
            return killed
        for pid in alive.keys() - unreapable_zombies:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    raise SandboxError(f"processes of sandbox uid {uid} survive SIGKILL: {_processes_of_uid(uid)}")


def _read_available(fd: int, cap: int = 1 << 16) -> bytes:
    os.set_blocking(fd, False)
    chunks, size = [], 0
    while size < cap:
        try:
            chunk = os.read(fd, cap - size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class Sandbox:
    """Runs programs with `run(source)` or, on parallel workers, `run_many(sources)`."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self.is_root = os.geteuid() == 0
        self.workers = self.config.workers or os.cpu_count() or 1
        self._slots: queue.Queue[int | None] = queue.Queue()
        self._uid_locks: list = []
        self.uids: list[int] = self._claim_uids() if self.is_root else []  # as root: the uid of each worker slot
        if self.is_root:
            for uid in self.uids:
                self._slots.put(uid)
            become_subreaper()
        else:
            for _ in range(self.workers):
                self._slots.put(None)
            log.warning("sandbox: not running as root, so programs keep your uid: the process limit counts your own "
                        "processes too and leftover processes are found by process group only")
        self._isolation_logged = False
        self.last_isolation: dict | None = None  # what the latest run achieved (network, private tmp, uid)

    def _claim_uids(self) -> list[int]:
        """One free uid per worker: not an account's, and not held by another sandbox (in this or another process),
        since `kill_uid` kills every process of the uid after each program."""
        lock_dir = Path(tempfile.gettempdir()) / "refact-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        claimed = []
        for uid in range(self.config.uid_base, self.config.uid_base + self.config.uid_count):
            if len(claimed) == self.workers:
                break
            try:
                pwd.getpwuid(uid)
                continue  # a real account
            except KeyError:
                pass
            f = open(lock_dir / f"{uid}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            self._uid_locks.append(f)  # held (open) as long as this sandbox lives
            claimed.append(uid)
        if len(claimed) < self.workers:
            raise SandboxError(f"only {len(claimed)} free sandbox uids in [{self.config.uid_base}, "
                               f"{self.config.uid_base + self.config.uid_count}) for {self.workers} workers; raise "
                               f"sandbox.uid_count or move sandbox.uid_base (configs/eval/eval.yaml)")
        return claimed

    def run(self, source: str) -> ExecutionResult:
        uid = self._slots.get()
        try:
            return self._run_in_slot(source, uid)
        finally:
            self._slots.put(uid)

    def run_many(self, sources: Sequence[str], desc: str = "sandbox") -> list[ExecutionResult]:
        if not sources:
            return []
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(self.run, s) for s in sources]
            return [f.result() for f in tqdm(futures, desc=desc, unit="prog", leave=False)]

    def _run_in_slot(self, source: str, uid: int | None) -> ExecutionResult:
        cfg, limits = self.config, self.config.limits
        nonce = secrets.token_hex(16)
        workdir = Path(tempfile.mkdtemp(prefix="refact-sandbox-"))
        logdir = Path(tempfile.mkdtemp(prefix="refact-sandbox-log-"))  # root-owned: the child only holds the fds
        if uid is not None:
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        request = {"nonce": nonce, "source": source, "uid": uid, "gid": uid, "limits": asdict(limits),
                   "network_namespace": cfg.network_namespace, "private_tmp": cfg.private_tmp,
                   "private_tmp_dirs": list(cfg.private_tmp_dirs), "private_tmp_mb": cfg.private_tmp_mb,
                   "preimport": list(cfg.preimport)}
        read_fd, write_fd = os.pipe()
        start = time.monotonic()
        timed_out = False
        try:
            with open(logdir / "stdout", "wb") as out, open(logdir / "stderr", "wb") as err:
                proc = subprocess.Popen([cfg.python, *cfg.python_flags, str(LAUNCHER), str(write_fd)],
                                        stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=workdir,
                                        env=_clean_env(), pass_fds=(write_fd,), start_new_session=True)
            os.close(write_fd)
            write_fd = -1
            try:
                proc.stdin.write(json.dumps(request).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                exit_code = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                exit_code = proc.wait()
            duration = time.monotonic() - start
            self._kill_leftovers(proc.pid, uid)
            verdict = _read_available(read_fd).decode("utf-8", "replace").splitlines()
            stdout, stderr = _tail(logdir / "stdout"), _tail(logdir / "stderr")
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(logdir, ignore_errors=True)
        isolation = self._parse_setup(verdict, exit_code, stderr)
        passed = exit_code == 0 and not timed_out and f"pass {nonce}" in verdict
        if passed:
            status = "passed"
        elif timed_out:
            status = "timeout"
        elif exit_code is not None and exit_code < 0:
            status = "killed"  # by a limit: SIGXCPU, SIGKILL after the hard CPU limit, SIGSEGV ...
        elif exit_code == 0:
            status = "no_verdict"  # exited with 0 before the tests finished (os._exit(0) and the like)
        else:
            status = "failed"
        return ExecutionResult(passed, status, exit_code, round(duration, 4), stdout, stderr, isolation)

    def _kill_leftovers(self, pgid: int, uid: int | None) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if uid is not None:
            kill_uid(uid)

    def _parse_setup(self, verdict: list[str], exit_code: int | None, stderr: str) -> dict:
        # Only the first line is the launcher's: the program runs after it and may write anything (or exit with 97).
        first = verdict[0] if verdict else ""
        if first.startswith("setup-error ") or (not first and exit_code == SETUP_FAILED_EXIT):
            raise SandboxError(f"sandbox set-up failed: {first or 'no message'}; stderr: {stderr[-500:]}")
        if not first.startswith("setup "):
            return {}  # killed (wall clock) before the set-up finished
        isolation = json.loads(first[len("setup "):])
        self.last_isolation = isolation
        if not self._isolation_logged:
            self._isolation_logged = True
            if isolation.get("reasons"):
                log.warning("sandbox isolation partial: network namespace %s, private tmp %s; reasons: %s",
                            isolation.get("network"), isolation.get("private_tmp"), "; ".join(isolation["reasons"]))
            else:
                log.info("sandbox isolation: network namespace %s, private tmp %s, uid %s",
                         isolation.get("network"), isolation.get("private_tmp"), isolation.get("uid"))
        return isolation


def run_programs(sources: Iterable[str], config: SandboxConfig | None = None, desc: str = "sandbox"):
    """Convenience: one sandbox, all programs, results in input order."""
    return Sandbox(config).run_many(list(sources), desc=desc)
