"""Hostile programs are contained and scored as failures; the hostile programs are bounded themselves."""
import os
import socket
import time
from pathlib import Path

import pytest

from evals.humaneval import build_program, load_problems
from evals.sandbox import Sandbox, SandboxConfig, SandboxLimits, _processes_of_uid

LIMITS = SandboxLimits(timeout_s=3.0, cpu_s=2, memory_mb=512, max_processes=16, max_file_mb=1, max_open_files=64)


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(SandboxConfig(limits=LIMITS, workers=2))


def test_plain_program_passes_and_failing_assert_fails(sandbox):
    ok, bad = sandbox.run_many(["import math\nassert math.gcd(12, 18) == 6\nprint('fine')\n", "assert 1 == 2\n"])
    assert ok.passed and ok.status == "passed" and "fine" in ok.stdout
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.stderr


def test_infinite_loop_is_stopped(sandbox):
    start = time.monotonic()
    result = sandbox.run("while True:\n    pass\n")
    assert not result.passed and result.status in ("killed", "timeout")
    assert time.monotonic() - start < LIMITS.timeout_s + 3


def test_sleeping_program_hits_the_wall_clock(sandbox):
    result = sandbox.run("import time\ntime.sleep(30)\n")
    assert result.status == "timeout" and not result.passed


def test_fork_bomb_is_capped_and_cleaned_up(sandbox):
    # Bounded: 300 forks at most, each child sleeps 3 s and exits. With the process limit the 17th fork fails.
    bomb = "import os, time\nfor i in range(300):\n    if os.fork() == 0:\n        time.sleep(3)\n        os._exit(0)\n"
    result = sandbox.run(bomb)
    assert not result.passed and "BlockingIOError" in result.stderr
    if sandbox.is_root:  # every process of the slot uids was killed and reaped
        for uid in sandbox.uids:
            assert _processes_of_uid(uid) == {}


def test_concurrent_sandboxes_get_disjoint_uids(sandbox):
    if not sandbox.is_root:
        pytest.skip("uids are only switched when running as root")
    other = Sandbox(SandboxConfig(limits=LIMITS, workers=2))
    assert len(set(other.uids) | set(sandbox.uids)) == 4
    assert other.run("import os\nassert os.getuid() != 0\n").passed


def test_memory_hog_is_capped(sandbox):
    # 3 GB at most; bytes(n) maps zeroed pages without touching them, so the address-space limit is what stops it.
    hog = "chunks = []\nfor i in range(30):\n    chunks.append(bytes(100 << 20))\n"
    result = sandbox.run(hog)
    assert not result.passed and "MemoryError" in result.stderr


def test_write_outside_the_temp_dir_is_refused(sandbox):
    # A root-owned directory outside every tmp (pytest's tmp_path is under /tmp, which the sandbox covers; so may be
    # the checkout itself, e.g. a CI clone under /tmp, which the sandbox's private /tmp would hide).
    private = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
    here = Path(__file__).resolve().parent
    folder = here if not str(here).startswith(private) else Path("/var/lib")
    target = folder / f"escaped-{os.getpid()}.txt"
    try:
        result = sandbox.run(f"open({str(target)!r}, 'w').write('x')\n")
        assert not result.passed and "PermissionError" in result.stderr
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_world_writable_tmp_is_private(sandbox):
    marker = f"/tmp/refact-sandbox-escape-{os.getpid()}"
    result = sandbox.run(f"open({marker!r}, 'w').write('x')\nimport os\nassert os.path.exists({marker!r})\n")
    if "/tmp" not in result.isolation.get("private_tmp", []):
        pytest.skip(f"no private /tmp here: {result.isolation.get('reasons')}")
    assert result.passed  # it wrote, into its own tmpfs ...
    assert not os.path.exists(marker)  # ... which the host never sees


def test_disk_filler_is_capped(sandbox):
    # 200 MB at most (1 MB files, under the 1 MB file-size limit of LIMITS); the private /tmp tmpfs holds 64 MB.
    filler = "for i in range(200):\n    open(f'junk{i}', 'wb').write(bytes((1 << 20) - 1))\n"
    result = sandbox.run(filler)
    if "/tmp" not in result.isolation.get("private_tmp", []):
        pytest.skip(f"no private /tmp here: {result.isolation.get('reasons')}")
    assert not result.passed and "No space left on device" in result.stderr


def test_network_is_unreachable(sandbox):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        result = sandbox.run(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                             "s.sendall(b'leak')\n")
        if not result.isolation.get("network"):
            pytest.skip(f"no network namespace here: {result.isolation.get('reasons')}")
        assert not result.passed and "Error" in result.stderr  # OSError: network is unreachable
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()


def test_early_exit_and_fake_output_do_not_pass(sandbox):
    problem = load_problems(limit=1)[0]
    wrong = "    return True\n"
    early_exit = build_program(problem, wrong).replace("\ndef check(", "\nimport sys\nsys.exit(0)\ndef check(", 1)
    hard_exit = build_program(problem, "    import os\n    os._exit(0)\n" + wrong)
    fake = build_program(problem, wrong).replace("\ndef check(", "\nprint('pass')\nimport os\nos._exit(0)\ndef check(",
                                                 1)
    # 97 is the launcher's "set-up failed" code: from the program it is an ordinary failure, not a sandbox error
    setup_code = build_program(problem, "    import os\n    os._exit(97)\n")
    results = sandbox.run_many([early_exit, hard_exit, fake, setup_code])
    assert [r.passed for r in results] == [False, False, False, False]
    assert results[3].status == "failed" and results[3].exit_code == 97
    assert results[0].status == "failed" and "sys.exit(0)" in results[0].stderr
    assert results[1].status == "no_verdict" and results[2].status == "no_verdict"


def test_environment_is_scrubbed_and_uid_dropped(sandbox, monkeypatch):
    monkeypatch.setenv("REFACT_TEST_SECRET", "hunter2")
    checks = "import os\nassert 'REFACT_TEST_SECRET' not in os.environ, os.environ\n"
    if sandbox.is_root:
        checks += "assert os.getuid() != 0 and os.geteuid() != 0\n"
    result = sandbox.run(checks)
    assert result.passed, result.stderr


def test_a_few_canonical_solutions_pass_and_empty_bodies_fail(sandbox):
    problems = load_problems()[::20]  # 9 spread over the set; all 164 are in the slow test below
    results = sandbox.run_many([build_program(p, p.canonical_solution) for p in problems]
                               + [build_program(p, "") for p in problems])
    n = len(problems)
    assert all(r.passed for r in results[:n]), [r.stderr for r in results[:n] if not r.passed]
    assert not any(r.passed for r in results[n:])


@pytest.mark.slow
def test_all_164_canonical_solutions_pass_and_empty_bodies_fail():
    problems = load_problems()
    sandbox = Sandbox(SandboxConfig())
    canonical = sandbox.run_many([build_program(p, p.canonical_solution) for p in problems])
    failures = {p.task_id: r.stderr[-300:] for p, r in zip(problems, canonical) if not r.passed}
    assert not failures
    empty = sandbox.run_many([build_program(p, "") for p in problems])
    assert [p.task_id for p, r in zip(problems, empty) if r.passed] == []
