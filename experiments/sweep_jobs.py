"""What a sweep's jobs run, on a Slurm node or in a local worker (submitted by tools/sweep.py).

A *unit* is a training run followed by the evaluations that load its checkpoint (base-to-new:
train_base, test_base, test_new of one seed; xd: the ImageNet run and its targets), or a
single run. Each run of a unit:

- is skipped when finished (a complete log: experiments/protocols.py);
- runs under its run directory's lock (experiments/locks.py), so two jobs never run it at once;
  when another live process holds it, the rest of the unit is left to that process;
- runs ``train.py`` as a child process. Restarted in the same directory, training resumes
  from its last epoch (trainers/resume.py), so an interrupted run ends as an uninterrupted one.
  A unit's evaluations (xd: every target of its seed) run in one child process,
  ``tools/evaluate_many.py`` (CLIP loaded once, each split's features read once), unless the
  job's environment sets ``EVAL_BATCH=0``.

A failed or interrupted run leaves a record in ``<sweep>/failures/`` (exit status, log, last
error line; its stderr is kept in ``<sweep>/stderr/``) for ``sweep.py status`` and ``--wait``.
On Slurm a unit is a ``submitit`` Checkpointable: at the time limit or on preemption submitit
requeues it, and the requeued job picks the unit up again where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import submitit

from experiments.atomic import write_text
from experiments.locks import RunLock, children_environment, slurm_job_id
from experiments.protocols import Run, is_finished, log_files

FAILURES = "failures"
STDERR = "stderr"


def run_key(run_dir: str) -> str:
    """A file name for a run directory (its records in the sweep folder)."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def failure_path(sweep_dir: Path | str, run_dir: str) -> Path:
    return Path(sweep_dir) / FAILURES / f"{run_key(run_dir)}.json"


def read_failure(sweep_dir: Path | str, run_dir: str) -> dict | None:
    """The failure record of a run in a sweep, or None."""
    try:
        return json.loads(failure_path(sweep_dir, run_dir).read_text())
    except (OSError, ValueError):
        return None


def last_error(text: str) -> str:
    """The line of a failed run's stderr that says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for marker in ("error:", "Error", "Killed"):
        for line in reversed(lines):
            if marker in line:
                return line[:400]
    return lines[-1][:400] if lines else "(no output on stderr)"


def child_environment(device: str | None, threads: int | None) -> dict[str, str]:
    """The environment of train.py: this job's, with its GPU and a thread count for its CPUs.

    Args:
        device: the one GPU the run may see ("" for none); None keeps CUDA_VISIBLE_DEVICES as
            the scheduler set it (Slurm gives each job only its own GPUs).
        threads: torch's CPU threads when OMP_NUM_THREADS is not set; None uses Slurm's
            CPUs per task where there is one.
    """
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    if threads is None and env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        threads = int(env["SLURM_CPUS_PER_TASK"])
    if threads and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _tee(source, sink, keep: deque) -> None:
    """Copy a child's stderr to our stderr and to its file, keeping its tail."""
    for line in iter(source.readline, ""):
        sys.stderr.write(line)
        sink.write(line)
        sink.flush()
        keep.append(line)


def run_one(run: Run, repo_root: str, sweep_dir: str, env: Mapping[str, str]) -> str:
    """Runs one run unless finished or held elsewhere.

    Returns:
        "done" (finished now or before), "busy" (another live process holds it), "failed" or
        "interrupted" (killed by a signal: cancelled, preempted, timed out) or "blocked" (the
        checkpoint it evaluates is missing).
    """
    if is_finished(run.run_dir, run.training):
        return "done"
    record = failure_path(sweep_dir, run.run_dir)
    checkpoint = run.checkpoint
    if checkpoint is not None and not Path(checkpoint).is_file():
        _write_failure(
            record, run, "blocked", None, f"no checkpoint {checkpoint}: its training did not "
            "finish or did not save that epoch", "",
        )  # fmt: skip
        return "blocked"
    lock = RunLock(run.run_dir)
    if not lock.acquire():
        print(f"busy: {run.run_dir} is being run by {lock.holder_text()}", file=sys.stderr)
        return "busy"
    try:
        if is_finished(run.run_dir, run.training):
            return "done"
        record.unlink(missing_ok=True)
        stderr_path = Path(sweep_dir) / STDERR / f"{run_key(run.run_dir)}.txt"
        stderr_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"run: {run.run_dir}\n{shlex.join(run.command)}", flush=True)
        tail: deque[str] = deque(maxlen=200)
        with stderr_path.open("a") as sink:
            child = subprocess.Popen(
                list(run.command),
                cwd=repo_root,
                env=lock.child_environment(env),
                stderr=subprocess.PIPE,
                text=True,
            )
            copier = threading.Thread(target=_tee, args=(child.stderr, sink, tail), daemon=True)
            copier.start()
            try:
                code = child.wait()
            except BaseException:  # cancelled or requeued (submitit exits): no orphan child
                child.kill()
                child.wait()
                message = "stopped: its job was cancelled, or requeued to resume it"
                _write_failure(record, run, "interrupted", None, message, str(stderr_path))
                raise
            copier.join(timeout=10)
    finally:
        lock.release()
    if code == 0 and is_finished(run.run_dir, run.training):
        return "done"
    outcome = "interrupted" if code < 0 else "failed"
    if code == 0:
        message = "train.py exited without a complete log (no accuracy after training)"
    else:
        message = last_error("".join(tail))
    _write_failure(record, run, outcome, code, message, str(stderr_path))
    return outcome


def _write_failure(
    path: Path, run: Run, outcome: str, code: int | None, message: str, stderr: str
) -> None:
    logs = log_files(run.run_dir) if Path(run.run_dir).is_dir() else []
    record = {
        "run_dir": run.run_dir,
        "outcome": outcome,
        "exit_code": code,
        "last_error": message,
        "log": str(logs[-1]) if logs else None,
        "stderr": stderr,
        "host": socket.gethostname(),
        "job": slurm_job_id() or os.environ.get("SUBMITIT_LOCAL_JOB_ID", ""),
        "time": time.time(),
        "run": asdict(run),
    }
    write_text(path, json.dumps(record, indent=1), "the run's failure record")


def run_evaluations(
    runs: Sequence[Run], repo_root: str, sweep_dir: str, env: Mapping[str, str]
) -> dict[str, str]:
    """Runs evaluations in one ``tools/evaluate_many.py`` process, each under its lock, with
    the outcomes (and failure records) :func:`run_one` gives; one alone runs as its command."""
    outcomes: dict[str, str] = {}
    held: list[tuple[Run, RunLock]] = []
    try:
        for run in runs:
            checkpoint = run.checkpoint
            lock = RunLock(run.run_dir)
            if is_finished(run.run_dir, run.training):
                outcomes[run.run_dir] = "done"
            elif checkpoint is not None and not Path(checkpoint).is_file():
                outcomes[run.run_dir] = run_one(run, repo_root, sweep_dir, env)  # "blocked"
            elif not lock.acquire():
                print(f"busy: {run.run_dir} is being run by {lock.holder_text()}", file=sys.stderr)
                outcomes[run.run_dir] = "busy"
            else:
                held.append((run, lock))
        if len(held) <= 1:
            for run, lock in held:
                lock.release()
                outcomes[run.run_dir] = run_one(run, repo_root, sweep_dir, env)
            held = []
            return outcomes
        # Each train.py of the batch goes on under the lock held here for its run.
        env = children_environment([lock for _, lock in held], env)
        code, tail, stderr_path = _evaluate_many(
            [run for run, _ in held], repo_root, sweep_dir, env
        )
    finally:
        for _, lock in held:
            lock.release()
    for run, _ in held:
        if is_finished(run.run_dir, run.training):
            outcomes[run.run_dir] = "done"
            continue
        mine = [line for line in tail if run.run_dir in line]
        message = last_error("".join(mine or tail))
        outcome = "interrupted" if code is None or code < 0 else "failed"
        record = failure_path(sweep_dir, run.run_dir)
        _write_failure(record, run, outcome, code, message, str(stderr_path))
        outcomes[run.run_dir] = outcome
    return outcomes


def _evaluate_many(
    runs: Sequence[Run], repo_root: str, sweep_dir: str, env: Mapping[str, str]
) -> tuple[int | None, deque, Path]:
    """(exit status, stderr tail, stderr file) of one tools/evaluate_many.py process."""
    for run in runs:
        failure_path(sweep_dir, run.run_dir).unlink(missing_ok=True)
        print(f"run: {run.run_dir}\n{shlex.join(run.command)}", flush=True)
    stderr_path = Path(sweep_dir) / STDERR / f"{run_key(runs[0].run_dir)}-evaluations.txt"
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    commands = json.dumps([list(run.command[2:]) for run in runs])
    tail: deque[str] = deque(maxlen=400)
    with stderr_path.open("a") as sink:
        child = subprocess.Popen(
            [runs[0].command[0], "tools/evaluate_many.py"], cwd=repo_root, env=dict(env),
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        copier = threading.Thread(target=_tee, args=(child.stderr, sink, tail), daemon=True)
        copier.start()
        try:
            child.stdin.write(commands)
            child.stdin.close()
            code = child.wait()
        except BaseException:  # cancelled or requeued (submitit exits): no orphan child
            child.kill()
            child.wait()
            message = "stopped: its job was cancelled, or requeued to resume it"
            for run in runs:
                if not is_finished(run.run_dir, run.training):
                    record = failure_path(sweep_dir, run.run_dir)
                    _write_failure(record, run, "interrupted", None, message, str(stderr_path))
            raise
        copier.join(timeout=10)
    return code, tail, stderr_path


def _batched(run: Run, repo_root: str, env: Mapping[str, str]) -> bool:
    """Whether a run joins its unit's one evaluation process (a train.py evaluation, in a
    repository with tools/evaluate_many.py, EVAL_BATCH not 0)."""
    return (
        not run.training
        and run.command[1:2] == ("train.py",)
        and env.get("EVAL_BATCH") != "0"
        and (Path(repo_root) / "tools" / "evaluate_many.py").is_file()
    )


def run_unit(
    runs: Sequence[Run], repo_root: str, sweep_dir: str, env: Mapping[str, str]
) -> dict[str, str]:
    """Runs a unit's runs in order (its consecutive evaluations in one process, see
    :func:`run_evaluations`); stops where the rest depends on what did not happen.

    Returns:
        run directory -> outcome (see :func:`run_one`; "not run" after a stop).
    """
    outcomes: dict[str, str] = {}
    index = 0
    while index < len(runs):
        run = runs[index]
        if _batched(run, repo_root, env):
            batch = [run]
            while index + len(batch) < len(runs) and _batched(
                runs[index + len(batch)], repo_root, env
            ):
                batch.append(runs[index + len(batch)])
            results = run_evaluations(batch, repo_root, sweep_dir, env)
            outcomes.update(results)
            index += len(batch)
            if {"busy", "interrupted"} & set(results.values()):
                break
            continue
        outcome = run_one(run, repo_root, sweep_dir, env)
        outcomes[run.run_dir] = outcome
        index += 1
        # After a training that did not finish, or a run held elsewhere, or a kill, the rest
        # of the unit cannot (or must not) run here; a failed evaluation leaves the others.
        if outcome in ("busy", "interrupted") or (outcome != "done" and run.training):
            break
    for run in runs:
        outcomes.setdefault(run.run_dir, "not run")
    return outcomes


class UnitJob(submitit.helpers.Checkpointable):
    """A Slurm array task: one unit. Requeued by submitit at the time limit or on preemption
    (``checkpoint`` resubmits it as it is; the runs resume from their own files)."""

    def __init__(self, runs: Sequence[Run], repo_root: str, sweep_dir: str):
        self.runs = list(runs)
        self.repo_root = repo_root
        self.sweep_dir = sweep_dir

    def __call__(self) -> dict[str, str]:
        env = child_environment(device=None, threads=None)
        return run_unit(self.runs, self.repo_root, self.sweep_dir, env)


class PoolWorker:
    """A local worker: goes through every unit of the sweep, taking those nobody holds.

    Several workers share the units through the run locks, each on its own GPU (or CPUs). A
    unit another process holds is looked at again every ``poll`` seconds until it is finished
    or free, so a worker that dies (cancelled, out of memory) leaves its unit to the others,
    which resume it.
    """

    def __init__(
        self,
        units: Sequence[Sequence[Run]],
        repo_root: str,
        sweep_dir: str,
        device: str,
        threads: int | None,
        poll: float = 5.0,
    ):
        self.units = [list(unit) for unit in units]
        self.repo_root = repo_root
        self.sweep_dir = sweep_dir
        self.device = device
        self.threads = threads
        self.poll = poll

    def __call__(self) -> dict[str, str]:
        env = child_environment(self.device, self.threads)
        outcomes: dict[str, str] = {}
        pending = self.units
        while pending:
            held_elsewhere = []
            for unit in pending:
                result = run_unit(unit, self.repo_root, self.sweep_dir, env)
                if "busy" in result.values():
                    held_elsewhere.append(unit)
                for run_dir, outcome in result.items():
                    if outcome not in ("busy", "not run") or run_dir not in outcomes:
                        outcomes[run_dir] = outcome
            if held_elsewhere:
                time.sleep(self.poll)
            pending = held_elsewhere
        return outcomes
