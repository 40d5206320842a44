"""The per-run lock (experiments/locks.py): one holder at a time, a dead holder never blocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from experiments.locks import LOCK_NAME, RunLock, live_holder, process_alive, read_holder

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import time
from experiments.locks import RunLock
lock = RunLock({run_dir!r})
print(lock.acquire(), flush=True)
time.sleep(60)
"""


def hold_in_subprocess(run_dir: Path) -> subprocess.Popen:
    """A process that takes the lock and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(run_dir=str(run_dir))],
        cwd=ROOT,  # python -c imports from the current folder
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "True"
    return process


def write_foreign_lock(run_dir: Path, age: float, **fields) -> None:
    """A lock file as a holder on another host would leave it, last touched ``age`` s ago."""
    run_dir.mkdir(parents=True, exist_ok=True)
    holder = {"host": "node-elsewhere", "pid": 1, "start": "", "job": "", "token": "t"}
    holder.update(since=time.time() - age, **fields)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps(holder))
    os.utime(path, (time.time() - age, time.time() - age))


def test_a_live_holder_keeps_others_out_and_is_named(tmp_path):
    """While a process holds the lock, acquire() fails and says which pid holds it."""
    holder = hold_in_subprocess(tmp_path / "run")
    try:
        lock = RunLock(tmp_path / "run")
        assert not lock.acquire()
        assert f"pid {holder.pid} on" in lock.holder_text()
        assert live_holder(tmp_path / "run").pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    """SIGKILL leaves the lock file behind; the next acquire() takes it at once."""
    holder = hold_in_subprocess(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()
    assert live_holder(tmp_path / "run") is None
    lock = RunLock(tmp_path / "run")
    assert lock.acquire()
    assert read_holder(lock.path).pid == os.getpid()
    lock.release()
    assert not lock.path.exists()


def test_a_lock_from_another_host_is_dead_once_its_heartbeat_is_old(tmp_path):
    """A fresh heartbeat from another host blocks; one older than stale_after does not."""
    write_foreign_lock(tmp_path / "fresh", age=5)
    assert not RunLock(tmp_path / "fresh", stale_after=60).acquire()
    write_foreign_lock(tmp_path / "old", age=120)
    lock = RunLock(tmp_path / "old", stale_after=60)
    assert lock.acquire()
    lock.release()


def test_a_requeued_slurm_job_takes_back_its_own_lock(tmp_path, monkeypatch):
    """The same Slurm array task (requeued elsewhere) reclaims its earlier, fresh lock."""
    write_foreign_lock(tmp_path / "run", age=1, job="77_3")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert not RunLock(tmp_path / "run").acquire()  # another task of the array: busy
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    lock = RunLock(tmp_path / "run")
    assert lock.acquire()
    lock.release()


def test_the_heartbeat_refreshes_a_held_lock(tmp_path):
    """The holder touches its lock file while it holds it."""
    lock = RunLock(tmp_path / "run", heartbeat=0.05)
    assert lock.acquire()
    os.utime(lock.path, (time.time() - 1000, time.time() - 1000))
    time.sleep(0.5)
    assert time.time() - lock.path.stat().st_mtime < 10
    lock.release()


def test_release_never_removes_someone_elses_lock(tmp_path):
    """A holder whose lock was taken over does not remove the new holder's file."""
    first = RunLock(tmp_path / "run")
    assert first.acquire()
    first.path.unlink()  # as if broken by someone who judged it dead
    second = RunLock(tmp_path / "run")
    assert second.acquire()
    first.release()
    assert read_holder(second.path).token == second.mine.token
    second.release()


def _try(run_dir: str, start: float) -> bool:
    time.sleep(max(0.0, start - time.time()))  # all try at the same moment
    lock = RunLock(run_dir)
    taken = lock.acquire()
    time.sleep(2.0)  # hold while the others try
    if taken:
        lock.release()
    return taken


def test_racing_processes_take_a_free_or_dead_lock_exactly_once(tmp_path):
    """Six processes at once, on a free lock and on a dead holder's lock: one wins each time."""
    write_foreign_lock(tmp_path / "dead", age=10_000)
    for run_dir in (tmp_path / "free", tmp_path / "dead"):
        with ProcessPoolExecutor(6) as pool:
            start = time.time() + 1.5
            outcomes = list(pool.map(_try, [str(run_dir)] * 6, [start] * 6))
        assert sum(outcomes) == 1, outcomes


def test_a_zombie_holder_is_dead(tmp_path):
    """A process that ended but was not reaped yet (a zombie) holds nothing."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not process_alive(child.pid, "")
    child.wait()
