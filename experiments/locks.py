"""A per-run lock: one process at a time trains or evaluates a run directory.

Every writer takes it: ``train.py`` (its --output-dir), the run scripts (tools/protocols.py) and
the sweeps. A script or sweep that holds it and starts ``train.py`` passes its token down
(:data:`TOKEN_VARIABLE`), so the child runs under the parent's lock instead of waiting on it.

The lock is the file ``<run_dir>/.run.lock``, created atomically (a hard link of a complete
file, which works on the NFS-like file systems of clusters), naming its holder: host, pid, the
process's start time, the Slurm job and a token. A holder that died never blocks for long:

- on the holder's host, the lock is dead as soon as its process is gone;
- from another host, it is dead when its Slurm job no longer runs (``squeue``) or when its
  heartbeat (the holder touches the file every ``HEARTBEAT_SECONDS``) is older than
  ``STALE_SECONDS``;
- a requeued Slurm job (same job id) takes back the lock of its earlier incarnation.

A dead lock is removed under a second, short-lived lock (``.run.lock.break``), after checking
that it is still the same dead holder, so two processes breaking it at once cannot remove a
fresh lock.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = ".run.lock"
# A process that holds a run's lock and starts ``train.py`` on that run names its token here, so
# train.py (which takes the lock of its output folder itself) goes on under the parent's lock.
TOKEN_VARIABLE = "PROGRAD_RUN_LOCK_TOKEN"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 300.0  # a heartbeat older than this is a dead holder on another host
BREAK_STALE_SECONDS = 60.0  # a break lock is held for milliseconds; older ones are leftovers
FRESH_SECONDS = 10.0  # a lock file still being written (empty) is live for this long
# Slurm job states in which the job's processes exist (anything else: its lock is dead).
_SLURM_ALIVE = {
    "RUNNING",
    "COMPLETING",
    "CONFIGURING",
    "SUSPENDED",
    "STOPPED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
}


@dataclass(frozen=True)
class Holder:
    """Who holds a lock."""

    host: str
    pid: int
    start: str  # the process's start time (/proc), so a reused pid is not mistaken for it
    job: str  # Slurm job (array task) id, or ""
    token: str  # unique per acquisition
    since: float  # time.time() at acquisition

    def describe(self) -> str:
        job = f", Slurm job {self.job}" if self.job else ""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}{job}, since {started}"


def slurm_job_id(environ: dict[str, str] | None = None) -> str:
    """This process's Slurm job id (``<array job>_<task>`` for an array task), or ""."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def _proc_stat(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on; [] where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces


def process_start(pid: int) -> str:
    """The start time of a process in clock ticks since boot ("" where /proc is missing)."""
    fields = _proc_stat(pid)
    return fields[19] if fields else ""  # field 22


def process_alive(pid: int, start: str) -> bool:
    """True when the process ``pid`` runs and is the one that started at ``start``.

    A zombie (ended, not yet reaped by its parent) is not alive.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _proc_stat(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    return not start or not fields or fields[19] == start


def slurm_job_running(job: str) -> bool | None:
    """Whether a Slurm job's processes exist; None when squeue cannot tell."""
    try:
        result = subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return False if "Invalid job id" in result.stderr else None
    states = set(result.stdout.split())
    return bool(states & _SLURM_ALIVE)


class RunLock:
    """The lock of one run directory.

    ``acquire()`` never waits: it returns False when a live holder has the run. While held, a
    daemon thread refreshes the heartbeat; ``release()`` removes the file.
    """

    def __init__(
        self,
        run_dir: Path | str,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_after: float = STALE_SECONDS,
    ):
        self.path = Path(run_dir) / LOCK_NAME
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.mine: Holder | None = None
        self.seen: Holder | None = None  # the live holder that made acquire() fail
        self.inherited: Holder | None = None  # the parent's holding we run under
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock unless a live holder has it; True when taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            holder = Holder(
                socket.gethostname(),
                os.getpid(),
                process_start(os.getpid()),
                slurm_job_id(),
                uuid.uuid4().hex,
                time.time(),
            )
            if _create(self.path, json.dumps(asdict(holder))):
                self.mine = holder
                self._start_heartbeat()
                return True
            current = read_holder(self.path)
            if current is None:
                if self.path.exists() and _age(self.path) < FRESH_SECONDS:
                    return False  # being written by its creator right now
                _remove_if(self.path, None)
                continue
            if self.alive(current):
                self.seen = current
                return False
            self._break(current)
        return False

    def acquire_or_inherit(self, environ: dict[str, str] | None = None) -> bool:
        """Take the lock, or go on under it when our parent holds it and said so.

        A parent that holds the lock passes its token in :data:`TOKEN_VARIABLE`
        (:meth:`child_environment`); the child then neither takes nor releases the lock (the
        parent's heartbeat keeps it). True when this process may run the run.
        """
        env = os.environ if environ is None else environ
        tokens = {token for token in env.get(TOKEN_VARIABLE, "").split(",") if token}
        current = read_holder(self.path)
        if current is not None and current.token in tokens:
            self.inherited = current
            return True
        return self.acquire()

    def child_environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """``environ`` (default: ours) plus this lock's token, for a child that runs the run."""
        return children_environment([self], environ)

    def refusal(self, what: str) -> str:
        """Why this process may not run the run (after acquire() failed), and what to do."""
        holder = self.seen.describe() if self.seen else "another process that is starting it"
        return (
            f"{what} is being run by {holder} (its lock is {self.path}). Only one process "
            f"writes a run at a time: wait for that one to end (or stop it), then run this "
            f"command again; a finished run is not rerun, an unfinished one resumes. A lock "
            f"left by a process that died does not block."
        )

    def release(self) -> None:
        """Give the lock back (a no-op when it is not held)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.mine is not None:
            _remove_if(self.path, self.mine.token)
        self.mine = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def alive(self, holder: Holder) -> bool:
        """Whether ``holder`` may still be running the run."""
        if holder.job and holder.job == slurm_job_id():
            return False  # this job's earlier run, before Slurm requeued it
        if holder.host == socket.gethostname():
            return process_alive(holder.pid, holder.start)
        if holder.job and slurm_job_running(holder.job) is False:
            return False
        return _age(self.path) < self.stale_after

    def holder_text(self) -> str:
        """The live holder that kept acquire() from taking the lock, in words."""
        return self.seen.describe() if self.seen else "another process"

    def _break(self, dead: Holder) -> None:
        breaker = self.path.with_name(LOCK_NAME + ".break")
        if not _create(breaker, dead.token):
            if _age(breaker) > BREAK_STALE_SECONDS:
                _remove_if(breaker, None)
            return
        try:
            _remove_if(self.path, dead.token)
        finally:
            breaker.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        token = self.mine.token

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                current = read_holder(self.path)
                if current is None or current.token != token:
                    return  # broken by someone who judged us dead; nothing to refresh
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()


def children_environment(
    locks: Sequence[RunLock], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``environ`` (default: ours) plus the tokens of the ``locks`` we hold, for a child that runs
    those runs (one ``train.py``, or tools/evaluate_many.py running several): it goes on under
    them (:meth:`RunLock.acquire_or_inherit`)."""
    env = dict(os.environ if environ is None else environ)
    tokens = [lock.mine.token for lock in locks if lock.mine is not None]
    if tokens:
        env[TOKEN_VARIABLE] = ",".join(tokens)
    return env


def read_holder(path: Path) -> Holder | None:
    """The holder named in a lock file, or None when it is missing or unreadable."""
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def live_holder(run_dir: Path | str) -> Holder | None:
    """The live holder of a run directory's lock, or None (free, or held by a dead process)."""
    lock = RunLock(run_dir)
    holder = read_holder(lock.path)
    return holder if holder is not None and lock.alive(holder) else None


def _create(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content`` unless it exists; atomic, True when created."""
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(content)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here: exclusive create, then write
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _remove_if(path: Path, token: str | None) -> None:
    """Remove a lock file if its holder still has ``token`` (None: whoever holds it)."""
    if token is not None:
        holder = read_holder(path)
        if holder is None or holder.token != token:
            return
    path.unlink(missing_ok=True)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0
