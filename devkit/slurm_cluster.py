"""A throwaway single-node Slurm cluster on this machine, for the sweep tests.

Debian's ``slurm-wlm`` and ``munge`` packages (``scripts/ci/install_slurm.sh``) give the real
daemons. :func:`start_cluster` writes a ``slurm.conf`` in a folder of its own (linuxproc process
tracking, no task plugin, no accounting, its own ports and munge socket), starts munged,
slurmctld and slurmd in the foreground as child processes, and stops exactly those processes
(by pid) when the context ends. Clients find the cluster through ``SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

BINARIES = (
    "munged",
    "mungekey",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scancel",
    "scontrol",
    "sinfo",
)


def unavailable_reason() -> str | None:
    """Why a cluster cannot start here, or None."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"Slurm/munge binaries missing ({', '.join(missing)}); install them with "
            "bash scripts/ci/install_slurm.sh"
        )
    if os.geteuid() != 0:
        return "slurmd runs jobs as any user only as root; run the Slurm tests as root"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CONFIG = """\
ClusterName=sweeptest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job waits before it starts again (default 120 s).
AuthInfo=socket={folder}/munge/munge.sock,cred_expire=10
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=5
SwitchType=switch/none
NodeName={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@contextlib.contextmanager
def start_cluster(folder: Path, timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Run a one-node cluster in ``folder``; yields the environment its clients need."""
    host = socket.gethostname().split(".")[0]
    for name in ("state", "spool", "munge"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    os.chmod(folder / "munge", 0o700)
    key = folder / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
    config = folder / "slurm.conf"
    config.write_text(
        CONFIG.format(
            host=host,
            folder=folder,
            ctld_port=free_port(),
            d_port=free_port(),
            cpus=os.cpu_count() or 1,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(config)}
    started: list[subprocess.Popen] = []
    logs = open(folder / "daemons.out", "w")  # noqa: SIM115  (closed below)
    try:
        munge = folder / "munge"
        started.append(
            subprocess.Popen(
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={munge}/munge.sock",
                    f"--key-file={key}",
                    f"--pid-file={munge}/munged.pid",
                    f"--log-file={munge}/munged.log",
                    f"--seed-file={munge}/munge.seed",
                ],
                stdout=logs,
                stderr=logs,
            )  # fmt: skip
        )
        _wait_for(lambda: (munge / "munge.sock").exists(), timeout, "munged's socket")
        for daemon in ("slurmctld", "slurmd"):
            started.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(config)], env=env, stdout=logs, stderr=logs
                )
            )
        _wait_for(lambda: _node_idle(env), timeout, "the Slurm node to be idle")
        yield {"SLURM_CONF": str(config)}
    finally:
        _cancel_jobs(env, timeout)
        for process in reversed(started):  # exactly the daemons started here, by pid
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(started):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()


def _cancel_jobs(env: dict[str, str], timeout: float) -> None:
    """Cancel what the tests left on this cluster, so no job step outlives its daemons."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, RuntimeError):
        subprocess.run(["scancel", "--full", "-u", "root"], env=env, timeout=30)
        _wait_for(lambda: _no_jobs(env), timeout, "the jobs to end")


def _no_jobs(env: dict[str, str]) -> bool:
    result = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30)
    return result.returncode != 0 or not result.stdout.strip()


def _node_idle(env: dict[str, str]) -> bool:
    result = subprocess.run(
        ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30
    )
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)
