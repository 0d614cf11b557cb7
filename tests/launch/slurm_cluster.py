"""A real Slurm cluster on 127.0.0.1 for the launch tests: munged, slurmctld and `slurmd -N localhost` (or several
slurmd, one per node name, for multi-node jobs).

Everything lives under one private directory (config, munge key and socket, state, spool, logs) and the daemons
listen on free ports, so the cluster touches nothing system-wide and two test sessions can run side by side.
`stop()` cancels the jobs, then ends every process it started by PID (daemons, and job step daemons found by
their sockets in this cluster's spool directory).
"""
from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

DAEMON_DIRS = ("/usr/sbin", "/usr/bin", "/sbin")


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    exit_code: str  # "rc:signal" as scontrol prints it
    restarts: int
    fields: dict = field(repr=False, default_factory=dict)


def find_daemon(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in DAEMON_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detected_cpus() -> int:
    """CPUs as slurmd counts them (`slurmd -C`), so the node registers without a mismatch."""
    out = subprocess.run([find_daemon("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"CPUs=(\d+)", out)
    return int(match.group(1)) if match else os.cpu_count() or 1


@dataclass(frozen=True)
class NodeSpec:
    name: str
    port: int
    cpus: int
    partition: str


def slurm_conf_text(root: Path, ctld_port: int, nodes: list[NodeSpec], munge_socket: Path) -> str:
    # cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
    # The daemons run as whoever starts them (root in CI; another user can run jobs only as itself).
    # Every node is a slurmd on this host (127.0.0.1) with its own port, spool directory and pid file (%n).
    user = getpass.getuser()
    node_lines = "\n".join(f"NodeName={n.name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={n.port} "
                           f"CPUs={n.cpus} RealMemory=4000 State=UNKNOWN" for n in nodes)
    partitions = {}
    for n in nodes:
        partitions.setdefault(n.partition, []).append(n.name)
    partition_lines = "\n".join(
        f"PartitionName={name} Nodes={','.join(members)} Default={'YES' if i == 0 else 'NO'} MaxTime=INFINITE "
        f"State=UP" for i, (name, members) in enumerate(partitions.items()))
    return f"""\
ClusterName=refacttest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket},cred_expire=10
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=10
SlurmdParameters=config_overrides
{node_lines}
{partition_lines}
"""


def parse_scontrol_record(text: str) -> dict[str, str]:
    """`scontrol show job -o` prints one line of KEY=VALUE pairs (values may hold '=' but not spaces)."""
    fields = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


class SlurmCluster:
    """One node `localhost` with all CPUs (default), or `nodes=N` > 1: nodes node1..nodeN, one slurmd each on this
    host, the CPUs shared out, for jobs that span nodes. The names node1.. do not resolve: multi-node jobs on this
    cluster give MASTER_ADDR=127.0.0.1."""

    def __init__(self, root: Path | None = None, nodes: int = 1):
        self.node_count = nodes
        self.owns_root = root is None  # a directory we made is removed by stop() (REFACT_KEEP_SLURM_DIR keeps it)
        self.root = Path(root or tempfile.mkdtemp(prefix="slurm-"))  # short: unix socket paths are <= 107 bytes
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SlurmCluster":
        for sub in ("state", "spool", "run", "log", "munge-run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key_dir = self.root / "munge-etc"
        key_dir.mkdir(mode=0o700, exist_ok=True)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge_socket = self.root / "munge-run" / "munge.socket"
        cpus = detected_cpus()
        if self.node_count == 1:
            self.nodes = [NodeSpec("localhost", free_port(), cpus, "debug")]
        else:
            per_node = max(1, cpus // self.node_count)
            self.nodes = [NodeSpec(f"node{i}", free_port(), per_node, "debug") for i in range(1, self.node_count + 1)]
        for node in self.nodes:
            (self.root / "spool" / node.name).mkdir(exist_ok=True)
        self.conf.write_text(slurm_conf_text(self.root, free_port(), self.nodes, munge_socket))
        self._spawn("munged", [find_daemon("munged"), "--foreground", "--force", f"--socket={munge_socket}",
                               f"--key-file={key}", f"--pid-file={self.root}/run/munged.pid",
                               f"--seed-file={self.root}/run/munged.seed", f"--log-file={self.root}/log/munged.log"])
        self._wait_for(lambda: munge_socket.exists(), timeout, "munged socket")
        self._spawn("slurmctld", [find_daemon("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        for node in self.nodes:
            self._spawn(f"slurmd-{node.name}", [find_daemon("slurmd"), "-D", "-N", node.name, "-f", str(self.conf)])
        self._wait_for(self._nodes_idle, timeout, "every node to become idle")
        return self

    def stop(self) -> None:
        try:
            if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
                self.cancel_all()
                self._wait_for(lambda: not self.run("squeue", "-h", check=False).stdout.strip(), 20,
                               "jobs to end", raise_on_timeout=False)
        finally:
            for pid in self._step_daemon_pids():
                _kill_tree(pid)
            daemons = [name for name in self.procs if name.startswith("slurmd-")] + ["slurmctld", "munged"]
            for name in daemons:
                proc = self.procs.pop(name, None)
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            if self.owns_root and not os.environ.get("REFACT_KEEP_SLURM_DIR"):
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- client commands --------------------------------------------------------------------------------------
    def cancel_all(self) -> None:
        self.run("scancel", "--user", getpass.getuser(), check=False)

    def run(self, *args: str, check: bool = True, env: dict | None = None, cwd=None, timeout: float = 60):
        result = subprocess.run(list(args), capture_output=True, text=True, env=env or self.env, cwd=cwd,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\n--- slurm logs ---\n{self.logs()}")
        return result

    def sbatch(self, *args: str, env: dict | None = None, cwd=None) -> int:
        out = self.run("sbatch", "--parsable", *args, env=env, cwd=cwd).stdout.strip()
        return int(out.split(";")[0].split("_")[0])

    def job(self, job_id: int | str) -> JobInfo:
        out = self.run("scontrol", "show", "job", "-o", str(job_id)).stdout
        fields = parse_scontrol_record(out.splitlines()[0])
        return JobInfo(int(fields["JobId"]), fields["JobState"], fields.get("ExitCode", ""),
                       int(fields.get("Restarts", 0)), fields)

    def array_jobs(self, array_job_id: int) -> list[JobInfo]:
        out = self.run("scontrol", "show", "job", "-o", str(array_job_id)).stdout
        infos = []
        for line in out.splitlines():
            fields = parse_scontrol_record(line)
            if fields:
                infos.append(JobInfo(int(fields["JobId"]), fields["JobState"], fields.get("ExitCode", ""),
                                     int(fields.get("Restarts", 0)), fields))
        return infos

    def wait_job(self, job_id: int, timeout: float, until=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                              "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")) -> JobInfo:
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job_id)
            if info.state in until:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {info.state} after {timeout:.0f}s:\n{info.fields}\n"
                                   f"--- slurm logs ---\n{self.logs()}")
            time.sleep(0.5)

    def logs(self, tail: int = 30) -> str:
        chunks = []
        for path in sorted((self.root / "log").glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            chunks.append(f"== {path.name} ==\n" + "\n".join(lines))
        return "\n".join(chunks)

    # -- internals --------------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out.log", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                            stdin=subprocess.DEVNULL, cwd=self.root)
        log.close()

    def _nodes_idle(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
        result = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return result.returncode == 0 and all(states.get(n.name) == "idle" for n in self.nodes)

    def _step_daemon_pids(self) -> list[int]:
        """slurmstepd processes re-parent to init; ours are the ones with sockets in our spool directory."""
        spool = str(self.root / "spool") + "/"
        pids = []
        for proc in psutil.process_iter(["name"]):
            if not (proc.info["name"] or "").startswith("slurmstepd"):
                continue
            try:
                if any(str(c.laddr).startswith(spool) for c in proc.net_connections(kind="unix")):
                    pids.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return pids

    def _wait_for(self, predicate, timeout: float, what: str, raise_on_timeout: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                if raise_on_timeout:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")
                return
            time.sleep(0.2)


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        victims = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=5)
