"""Regression tests for issue 10's attacks: forged verdicts, harness-level fakes and isolation escapes, each written
with real HumanEval problems or so that the check passes only if the attack worked; and nothing survives a run."""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from evals.humaneval import build_program, load_problems
from evals.sandbox import Program, Sandbox, SandboxConfig, SandboxError, SandboxLimits, processes_of_uid
from evals.sandbox_host import HostFeatureMissing, open_state_dir, try_lock
from sandbox_attack import assert_contained, attack  # tests/evals is on sys.path (no package)

LIMITS = SandboxLimits(timeout_s=8.0, cpu_s=4, memory_mb=512, max_processes=16, max_file_mb=1, max_open_files=64)
PROBLEMS = {p.task_id: p for p in load_problems()}

# Writes every way a verdict could be forged to every descriptor the candidate holds, then leaves without answering.
FORGE_EVERYWHERE = """
    import json, os
    def forge(payloads):
        for fd in range(3, 256):
            for data in payloads:
                try:
                    os.write(fd, data)
                except OSError:
                    pass
    plain = [json.dumps(v).encode() for v in ({"passed": True, "status": "passed", "reason": ""}, ["ok", True])]
    framed = [len(p).to_bytes(4, "big") + p for p in plain]
    forge(plain + framed + [b"\\npass " + s + b"\\n" for s in secrets] + [b"pass\\n"])
    os._exit(0)
"""


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(SandboxConfig(limits=LIMITS, workers=2))
    yield box
    box.close()


def wrong(problem_id: str, body: str) -> Program:
    return build_program(PROBLEMS[problem_id], body)


def host_ipc_keys(kind: str) -> set[int]:
    """Keys of the SysV IPC objects (shm, msg or sem) in the host's IPC namespace."""
    lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
    return {int(line.split()[0]) for line in lines if line.strip()}


def assert_failed(result):
    assert not result.passed and result.status in ("failed", "killed", "load_error"), result


# ---- forged verdicts ----------------------------------------------------------------------------------------------

def test_frame_walking_finds_nothing_to_forge(sandbox):
    body = """    import sys
    secrets, frame = [], sys._getframe()
    while frame is not None:  # every local of every frame up to the launcher's main()
        for value in list(frame.f_locals.values()):
            if isinstance(value, (str, bytes, int)):
                secrets.append(str(value).encode() if not isinstance(value, bytes) else value)
        frame = frame.f_back
""" + FORGE_EVERYWHERE
    assert_failed(sandbox.run(wrong("HumanEval/0", body)))


def test_memory_scan_finds_nothing_to_forge(sandbox):
    body = """    import ctypes, re
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    secrets = []
    for line in open('/proc/self/maps'):
        start, end = (int(x, 16) for x in line.split()[0].split('-'))
        if 'r' not in line.split()[1] or end - start > 64 << 20:
            continue
        try:
            with open('/proc/self/mem', 'rb') as mem:
                mem.seek(start)
                secrets += re.findall(rb'[0-9a-f]{32}', mem.read(end - start))
        except (OSError, ValueError, OverflowError):
            pass
    secrets = secrets[:2000]
""" + FORGE_EVERYWHERE
    assert_failed(sandbox.run(wrong("HumanEval/0", body)))


def test_other_processes_memory_is_out_of_reach(sandbox):
    assert_contained(sandbox.run(attack("""
        import os
        read = []
        for pid in os.listdir('/proc'):  # (as a user, bubblewrap's pid 1 is the user's own: not a target)
            if pid.isdigit() and int(pid) != os.getpid() and os.stat(f'/proc/{pid}').st_uid != os.getuid():
                try:
                    start = int(open(f'/proc/{pid}/maps').readline().split('-')[0], 16)
                    with open(f'/proc/{pid}/mem', 'rb') as mem:
                        mem.seek(start)
                        mem.read(16)
                    read.append(pid)
                except (OSError, ValueError):
                    pass
        return 'escaped' if read else sorted(os.listdir('/proc'))[:3]
    """)))


# ---- harness-level fakes: the check runs in another process, on plain data -------------------------------------

def test_custom_eq_object_is_refused(sandbox):
    body = """    class Yes:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
        def __bool__(self):
            return True
    return Yes()
"""
    result = sandbox.run(wrong("HumanEval/0", body))
    assert not result.passed and "cannot be passed as plain data" in result.reason, result


def test_patched_builtins_abs_does_not_reach_the_check(sandbox):
    # HumanEval/4's check: abs(candidate([1.0, 2.0, 3.0]) - 2.0/3.0) < 1e-6, and two more like it
    # (module-level code after the body: no stop sequence cuts `\nimport`)
    result = sandbox.run(wrong("HumanEval/4", "    return 99.0\nimport builtins\nbuiltins.abs = lambda x: 0\n"))
    assert not result.passed and result.status == "failed" and "AssertionError" in result.reason, result


def test_patched_math_fabs_does_not_reach_the_check(sandbox):
    # HumanEval/32's check: math.fabs(poly(coeffs, candidate(coeffs))) < 1e-4, with the prompt's helper poly
    body = "    import math\n    math.fabs = lambda x: 0.0\n    globals()['poly'] = lambda xs, x: 0.0\n    return 12345.0\n"
    result = sandbox.run(wrong("HumanEval/32", body))
    assert not result.passed and result.status == "failed" and "AssertionError" in result.reason, result


# ---- isolation ------------------------------------------------------------------------------------------------------

def test_sysv_ipc_does_not_outlive_a_run(sandbox):
    key = 0x5E000000 + uuid.uuid4().int % 0xFFFFFF
    token = uuid.uuid4().int % 10**9
    setup = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
    writer = attack(f"""
        shm = libc.shmget({key}, 200 << 20, 0o1666)  # IPC_CREAT | 0666, 200 MB
        addr = libc.shmat(shm, None, 0)
        ctypes.memset(addr, 1, 200 << 20)
        ctypes.cast(addr, ctypes.POINTER(ctypes.c_long))[0] = {token}
        q = libc.msgget({key}, 0o1666)
        msg = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_long) + 8)
        ctypes.cast(msg, ctypes.POINTER(ctypes.c_long))[0] = 1
        libc.msgsnd(q, msg, 8, 0)
        return 'wrote' if shm >= 0 and q >= 0 else 'no ipc'
    """, expect="'wrote'", setup=setup)
    reader = attack(f"""
        shm = libc.shmget({key}, 0, 0)
        q = libc.msgget({key}, 0)
        if shm < 0 and q < 0:
            return 'nothing'
        addr = libc.shmat(shm, None, 0) if shm >= 0 else None
        return ctypes.cast(addr, ctypes.POINTER(ctypes.c_long))[0] if addr not in (None, 2**64 - 1) else 'queue'
    """, expect=repr(token), setup=setup)
    first = sandbox.run(writer)
    assert first.passed, first  # the writer really created both (in its own IPC namespace)
    assert_contained(sandbox.run(reader))
    assert key not in host_ipc_keys("shm") | host_ipc_keys("msg")  # nothing of it is left in the host's namespace


def test_host_sockets_and_private_directories_are_invisible(sandbox):
    if not os.access("/run", os.W_OK):
        pytest.skip("cannot create the host socket under /run as this user")
    path, abstract = f"/run/refact-test-{os.getpid()}.sock", f"\0refact-test-{os.getpid()}"
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen(1)
        server.settimeout(0.3)
        servers.append(server)
    os.chmod(path, 0o777)
    hidden = ("/run", "/var/run", "/home", "/root", "/srv", "/mnt", "/media")
    host_view = {d: sorted(os.listdir(d)) for d in hidden if os.path.isdir(d)}
    try:
        result = sandbox.run(attack(f"""
            import os, socket
            for address in ({path!r}, {abstract!r}):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(address)
                    s.sendall(b'leak')
                    return 'escaped'
                except OSError:
                    pass
            host_view = {host_view!r}
            seen = {{d: sorted(os.listdir(d)) for d in host_view if os.path.isdir(d)}}
            # the way to the interpreter (e.g. /root/.pyenv) is the only thing it may see
            leaked = {{d: names for d, names in seen.items() if set(names) & set(host_view[d]) - {{'.pyenv'}}}}
            return 'escaped' if leaked else 'contained'
        """))
        assert_contained(result)
        for server in servers:
            with pytest.raises(socket.timeout):
                server.accept()
    finally:
        for server in servers:
            server.close()
        os.unlink(path)


def test_host_processes_are_invisible(sandbox):
    token = f"refact-token-{uuid.uuid4().hex}"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token])
    try:
        assert_contained(sandbox.run(attack("""
            import os
            for pid in os.listdir('/proc'):
                try:
                    if b'refact-token-' in open(f'/proc/{pid}/cmdline', 'rb').read():
                        return 'escaped'
                except OSError:
                    pass
            return len([p for p in os.listdir('/proc') if p.isdigit()])
        """)))
    finally:
        holder.kill()
        holder.wait()


def test_memory_cap_holds_for_the_run_as_a_whole(sandbox):
    if sandbox.isolation["cgroup"] is None:
        pytest.skip(f"no cgroup on this machine: {sandbox.warnings}")
    # Three children touch 300 MB each (under the 512 MB address-space limit per process) and hold it together.
    result = sandbox.run(attack("""
        import os, time
        r, w = os.pipe()
        children = []
        for i in range(3):
            pid = os.fork()
            if pid == 0:
                block = b'\\x01' * (300 << 20)
                os.write(w, b'x')
                time.sleep(2)
                os._exit(len(block) & 0)
            children.append(pid)
        os.close(w)
        held = 0
        while held < 3 and os.read(r, 1):
            held += 1
        return 'escaped' if held == 3 else held
    """))
    assert_contained(result)


def test_nothing_of_a_run_survives_it(sandbox):
    key = 0x5E000000 + uuid.uuid4().int % 0xFFFFFF
    result = sandbox.run(attack(f"""
        import ctypes, os, time
        libc = ctypes.CDLL(None, use_errno=True)
        if os.fork() == 0:  # a daemon: double fork, new session
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        libc.shmget({key}, 1 << 20, 0o1666)
        libc.msgget({key}, 0o1666)
        libc.semget({key}, 1, 0o1666)
        for d in ('/tmp', '/dev/shm'):
            open(f'{{d}}/left-behind-{key}', 'w').write('x')
        time.sleep(0.2)
        return 'done'
    """, expect="'done'"))
    assert result.passed, result
    uids = sandbox.isolation["uid"] if sandbox.is_root else [os.getuid()]
    if sandbox.is_root:
        assert [processes_of_uid(uid) for uid in uids] == [set()] * len(uids)
    assert key not in host_ipc_keys("shm") | host_ipc_keys("msg") | host_ipc_keys("sem")
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"):
        assert not os.path.exists(f"{d}/left-behind-{key}")
        if sandbox.is_root:
            owned_by_a_slot = [arg for uid in uids for arg in ("-o", "-uid", str(uid))][1:]
            left = subprocess.run(["find", d, "-xdev", "(", *owned_by_a_slot, ")", "-print"],
                                  capture_output=True, text=True).stdout
            assert left == "", left


# ---- lock files -----------------------------------------------------------------------------------------------------

def test_lock_files_never_follow_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state = tmp_path / "state"
    fd = open_state_dir(state)
    try:
        (state / "uid-1.lock").symlink_to(victim)
        with pytest.raises(OSError):  # O_NOFOLLOW: ELOOP
            try_lock(fd, "uid-1.lock")
        assert victim.read_text() == "precious"
        held = try_lock(fd, "uid-2.lock")
        assert held is not None and try_lock(fd, "uid-2.lock") is None  # flock: one holder
        assert stat.S_IMODE(os.fstat(held).st_mode) == 0o600
        os.close(held)
    finally:
        os.close(fd)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    with pytest.raises(HostFeatureMissing, match="no group or other permissions"):
        open_state_dir(loose)
    (tmp_path / "link").symlink_to(state)
    with pytest.raises(OSError):
        open_state_dir(tmp_path / "link")


def test_sandbox_refuses_a_planted_lock_file():
    if os.geteuid() != 0:
        pytest.skip("uid lock files are only used as root")
    victim = Path("/run/refact-sandbox/victim-for-test")
    planted = Path("/run/refact-sandbox/uid-64990.lock")
    Sandbox(SandboxConfig(workers=1)).close()  # creates the state directory
    victim.write_text("precious")
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    try:
        with pytest.raises(SandboxError, match="lock"):
            Sandbox(SandboxConfig(workers=1, uid_base=64990, uid_count=1))
        assert victim.read_text() == "precious"
    finally:
        planted.unlink()
        victim.unlink()


# ---- without a cgroup (cgroup hierarchies read-only in a mount namespace of the test's own) ---------------------------

HOLD_WITHOUT_CGROUP = """
import json, os, sys
from evals.sandbox import Program, Sandbox, SandboxConfig, SandboxLimits
from evals.sandbox_host import _mounts
for mount, _fstype, _options in _mounts():  # this mount namespace only
    os.system(f"mount -o remount,bind,ro {mount}")
box = Sandbox(SandboxConfig(limits=SandboxLimits(timeout_s=15, cpu_s=10, memory_mb=256, max_file_mb=16), workers=1))
HOLD = '''import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmdt.argtypes = [ctypes.c_void_p]
def shm():  # segments touched, then detached: out of the address space, still in memory
    for i in range(3):
        seg = libc.shmget(0, 128 << 20, 0o1600)
        if seg < 0:
            return os.strerror(ctypes.get_errno())
        addr = libc.shmat(seg, None, 0)
        ctypes.memset(addr, 1, 128 << 20)
        libc.shmdt(ctypes.c_void_p(addr))
    return 'escaped'
def memfd():  # files of no file system: unmapped
    fds = []
    for i in range(24):
        try:
            fds.append(os.memfd_create('x'))
        except OSError as err:
            return err.strerror
        for j in range(16):
            os.write(fds[-1], bytes(1 << 20))
    return 'escaped'
'''
check = "def check(candidate):\\n    assert candidate() == 'Operation not permitted'\\n"  # denied, not escaped
results = [box.run(Program(HOLD, name, "", check)) for name in ("shm", "memfd")]
print(json.dumps([box.isolation["cgroup"], box.isolation["seccomp"]] + [[r.passed, r.reason] for r in results]))
"""


def test_memory_outside_the_address_space_is_denied_without_a_cgroup(tmp_path):
    # Without a cgroup only RLIMIT_AS capped memory: a run with memory_mb=256 held 384 MB of SysV shared memory
    # (touched, then detached) and 384 MB of memfd files. Without a cgroup those syscalls are now denied.
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to make the cgroup hierarchies read-only in a mount namespace")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", HOLD_WITHOUT_CGROUP],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cgroup, seccomp, shm, memfd = json.loads(proc.stdout.splitlines()[-1])
    assert cgroup is None
    assert shm == [True, ""] and memfd == [True, ""], (shm, memfd)  # before: both failed, having held 384 MB
    assert "shmget" in seccomp and "memfd_create" in seccomp, seccomp
