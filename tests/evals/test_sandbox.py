"""The sandbox scores real programs right and contains hostile ones. Each hostile candidate returns the answer its check
accepts only if its attack worked, so a test that sees `passed` has seen an escape."""
import os
import socket
import time
from pathlib import Path

import pytest

from evals.humaneval import build_chat_program, build_program, load_problems
from evals.sandbox import Program, Sandbox, SandboxConfig, processes_of_uid
from evals.sandbox_wire import WireError, loads, to_plain
from sandbox_attack import LIMITS, assert_contained, attack  # tests/evals is on sys.path (no package)


def test_plain_data_round_trip_and_refusals():
    value = [1, 2.5, float("inf"), "s\udcff", None, True, (1, (2,)), {3, 4}, frozenset([5]), {(1, 2): [b"x"]}, 1j]
    assert loads(__import__("json").dumps(to_plain(value)).encode()) == value
    assert type(loads(b'{"tuple": [1]}')) is tuple

    class Sneaky(int):
        def __eq__(self, other):
            return True
    for bad in (Sneaky(1), [object()], {"k": lambda: 0}):
        with pytest.raises(WireError):
            to_plain(bad)
    for malformed in (b'{"a": 1}', b'{"tuple": 1}', b'{"set": [[1]]}', b'[' * 100000):
        with pytest.raises(WireError):
            loads(malformed)


def test_right_and_wrong_candidates(sandbox):
    ok, wrong, raises, missing = sandbox.run_many([
        attack("print('fine')\nreturn 'escaped'\n"), attack("return 'no'\n"), attack("raise KeyError('k')\n"),
        Program("x = 1\n", "attack", "", "def check(candidate):\n    candidate()\n")])
    assert ok.passed and ok.status == "passed" and "fine" in ok.stdout
    assert not wrong.passed and wrong.status == "failed" and "AssertionError" in wrong.reason
    assert raises.status == "failed" and "KeyError" in raises.reason
    assert missing.status == "load_error" and "no function 'attack'" in missing.reason


def test_infinite_loop_and_sleep_are_stopped(sandbox):
    start = time.monotonic()
    loop, sleep = sandbox.run_many([attack("while True:\n    pass\n"), attack("import time\ntime.sleep(30)\n")])
    assert loop.status in ("killed", "timeout") and sleep.status == "timeout"
    assert time.monotonic() - start < 2 * LIMITS.timeout_s + 4


def test_fork_bomb_is_capped_and_cleaned_up(sandbox):
    # Bounded: 100 forks at most, each child sleeps 30 s. It escaped if more forks than the process cap succeeded.
    result = sandbox.run(attack("""
        import os, time
        n = 0
        for i in range(100):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
            except OSError:
                pass
        return 'escaped' if n > 16 else n
    """))
    assert_contained(result)
    if sandbox.is_root:
        for uid in sandbox.isolation["uid"]:
            assert processes_of_uid(uid) == set()


def test_memory_hog_is_capped(sandbox):
    # 3 GB at most; bytes(n) maps zeroed pages without touching them, so the address-space limit is what stops it.
    result = sandbox.run(attack("chunks = [bytes(100 << 20) for i in range(30)]\nreturn 'escaped'\n"))
    assert not result.passed and "MemoryError" in result.reason


def test_huge_output_is_capped(sandbox):
    result = sandbox.run(attack("import sys\nfor i in range(100):\n    sys.stdout.write('x' * (1 << 20))\n"
                                "sys.stdout.flush()\nreturn 'escaped'\n"))
    assert not result.passed and len(result.stdout) <= 2000


def test_host_files_are_neither_writable_nor_readable(sandbox, tmp_path):
    here = Path(__file__).resolve().parent
    targets = [str(here / f"escaped-{os.getpid()}"), "/var/lib/escaped", "/usr/escaped", "/escaped"]
    secrets = {}
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"):  # the host's world-writable places, seen from the sandbox
        if os.path.isdir(d) and os.access(d, os.W_OK):
            path = Path(d) / f"refact-secret-{os.getpid()}"
            path.write_text("secret")
            secrets[str(path)] = "secret"
    try:
        write = sandbox.run(attack(f"""
            wrote = []
            for t in {targets!r}:
                try:
                    open(t, 'w').write('x')
                    wrote.append(t)
                except OSError:
                    pass
            return 'escaped' if wrote else 'contained'
        """))
        read = sandbox.run(attack(f"""
            found = {{}}
            for p in {sorted(secrets)!r}:
                try:
                    found[p] = open(p).read()
                except OSError:
                    pass
            return 'escaped' if found else 'contained'
        """))
        assert_contained(write)
        assert not any(os.path.exists(t) for t in targets)
        assert_contained(read)
    finally:
        for p in secrets:
            os.unlink(p)
        for t in targets:
            Path(t).unlink(missing_ok=True)


def test_private_tmp_is_writable_and_bounded(sandbox):
    writable = sandbox.run(attack("open('/tmp/x', 'w').write('y')\nreturn open('/tmp/x').read()\n", "'y'"))
    assert writable.passed, writable
    # 200 MB at most in files of 1 MB (under the 1 MB file-size limit); the tmpfs holds 64 MB
    filler = sandbox.run(attack("for i in range(200):\n    open(f'/tmp/junk{i}', 'wb').write(bytes((1 << 20) - 1))\n"
                                "return 'escaped'\n"))
    assert not filler.passed and "No space left on device" in filler.reason


def test_network_is_unreachable(sandbox):
    tcp, udp = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    tcp.settimeout(0.5)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    try:
        # the sandbox has its own loopback: the connection is refused there, the datagram goes nowhere on the host
        result = sandbox.run(attack(f"""
            import socket
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.sendto(b'leak', ('127.0.0.1', {udp.getsockname()[1]}))
            try:
                socket.create_connection(('127.0.0.1', {tcp.getsockname()[1]}), timeout=2).sendall(b'leak')
                return 'escaped'
            except OSError as err:
                return type(err).__name__
        """))
        assert_contained(result)
        with pytest.raises(socket.timeout):
            tcp.accept()
        with pytest.raises(socket.timeout):
            udp.recv(16)
    finally:
        tcp.close()
        udp.close()


def test_privileges_cannot_be_regained(sandbox):
    result = sandbox.run(attack("""
        import ctypes, os
        got = []
        try:
            os.setuid(0)
            got.append('setuid')
        except OSError:
            pass
        libc = ctypes.CDLL(None, use_errno=True)
        # PTRACE_ATTACH to the sandbox's pid 1 (bubblewrap's reaper): root's as root; as a user it is the user's own
        if os.stat('/proc/1').st_uid != os.getuid() and libc.ptrace(16, 1, 0, 0) == 0:
            got.append('ptrace')
        return 'escaped' if got or os.geteuid() == 0 else 'contained'
    """))
    assert_contained(result)


def test_environment_is_scrubbed(sandbox, monkeypatch):
    monkeypatch.setenv("REFACT_TEST_SECRET", "hunter2")
    assert_contained(sandbox.run(attack("import os\nreturn os.environ.get('REFACT_TEST_SECRET')\n", "'hunter2'")))


def test_early_exit_and_fake_output_do_not_pass(sandbox):
    problem = load_problems(limit=1)[0]
    wrong = "    return True\n"
    programs = [build_program(problem, wrong + "import sys\nsys.exit(0)\n"),
                build_program(problem, "    import os\n    os._exit(0)\n"),
                build_program(problem, "    print('pass')\n    import sys\n    sys.exit(0)\n"),
                build_program(problem, "    import os\n    os._exit(97)\n")]
    results = sandbox.run_many(programs)
    assert [r.passed for r in results] == [False] * 4
    assert results[0].status == "load_error" and "SystemExit" in results[0].reason
    assert results[1].status == "killed" and results[3].status == "killed"
    assert results[2].status == "failed"  # SystemExit inside the call comes back as an exception


def test_concurrent_sandboxes_get_disjoint_uids(sandbox):
    if not sandbox.is_root:
        pytest.skip("uids are only switched when running as root")
    other = Sandbox(SandboxConfig(limits=LIMITS, workers=2))
    try:
        assert len(set(other.isolation["uid"]) | set(sandbox.isolation["uid"])) == 4
        assert other.run(attack("import os\nreturn os.getuid()\n", repr(other.isolation["uid"][0]))).passed
    finally:
        other.close()


def test_chat_answers_and_prompt_helpers(sandbox):
    # helpers the tests call (32: poly, 38: encode_cyclic, 50: encode_shift), a test naming the entry point (33);
    # chat answers that are whole functions; a chat answer that is wrong
    problems = [load_problems()[i] for i in (0, 32, 33, 38, 50)]
    chat = [build_chat_program(p, p.prompt + p.canonical_solution) for p in problems]
    wrong = build_chat_program(problems[0], problems[0].prompt + "    return True\n")
    results = sandbox.run_many([build_program(p, p.canonical_solution) for p in problems] + chat + [wrong])
    assert [r.passed for r in results] == [True] * 10 + [False], [r.reason for r in results]


def test_all_164_canonical_solutions_pass_and_empty_bodies_fail():
    # ~20 s on the shared 2-core machine: the guarantee that the split harness scores every problem right
    problems = load_problems()
    sandbox = Sandbox(SandboxConfig())
    canonical = sandbox.run_many([build_program(p, p.canonical_solution) for p in problems])
    assert {p.task_id: r.reason for p, r in zip(problems, canonical) if not r.passed} == {}
    empty = sandbox.run_many([build_program(p, "") for p in problems])
    assert [p.task_id for p, r in zip(problems, empty) if r.passed] == []
    sandbox.close()
