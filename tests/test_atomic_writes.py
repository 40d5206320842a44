"""experiments/atomic.py: a write is whole or absent, and a disk error is one paragraph; the run
lock is inherited by a child that its holder names, and only by it."""

import errno
import os
import socket

import pytest

from experiments import atomic
from experiments.atomic import DiskWriteError, atomic_file, write_text
from experiments.locks import TOKEN_VARIABLE, RunLock, children_environment


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "the file system is full"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_disk_error_mid_write_keeps_the_old_file_and_names_path_what_and_fix(
    tmp_path, code, says
):
    """The previous content stays, no temporary file is left, and the error is one paragraph
    naming the path, what was written and to run the same command again."""
    path = tmp_path / "run.json"
    write_text(path, "old", "the run's record")
    with pytest.raises(DiskWriteError) as failed:
        with atomic_file(path, "the run's record", "w") as file:
            file.write("new, half")
            raise OSError(code, os.strerror(code))
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    message = str(failed.value)
    assert message.startswith(f"could not write the run's record to {path}: ")
    assert says in message and "run the same command again" in message and "\n" not in message
    assert failed.value.errno == code


def test_other_errors_pass_through_unchanged(tmp_path):
    """An error that is not about the disk is raised as it was (and the old file stays)."""
    path = tmp_path / "table.md"
    write_text(path, "old", "a table")
    with pytest.raises(ZeroDivisionError):
        with atomic_file(path, "a table", "w") as file:
            file.write("x")
            1 / 0  # noqa: B018
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """A temporary file of a dead process of this host goes; a live process's stays."""
    path = tmp_path / "model.pth.tar-2"
    host = socket.gethostname()
    dead = tmp_path / f".{path.name}.{host}.999999999.tmp"
    live = tmp_path / f".{path.name}.{host}.1.tmp"  # pid 1 always runs
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    atomic.write_bytes(path, b"whole", "a checkpoint")
    assert path.read_bytes() == b"whole" and not dead.exists() and live.exists()


def test_a_child_named_by_the_holder_runs_under_its_lock_and_no_one_else(tmp_path):
    """acquire_or_inherit: the token the holder passes down lets its child in; a process
    without it (or with another token) is refused, with the holder named."""
    holder = RunLock(tmp_path / "run")
    assert holder.acquire()
    try:
        child = RunLock(tmp_path / "run")
        assert child.acquire_or_inherit(holder.child_environment())
        child.release()  # an inherited lock is not the child's to remove
        assert (tmp_path / "run" / ".run.lock").exists()
        stranger = RunLock(tmp_path / "run")
        assert not stranger.acquire_or_inherit({TOKEN_VARIABLE: "someone-else"})
        refusal = stranger.refusal("--output-dir run")
        assert f"pid {os.getpid()} on {socket.gethostname()}, since " in refusal
    finally:
        holder.release()


def test_one_child_of_several_held_runs_goes_on_under_each_of_their_locks(tmp_path):
    """children_environment: a process running several runs at once (tools/evaluate_many.py)
    inherits the lock of each run its parent holds, and of no other run."""
    holders = [RunLock(tmp_path / name) for name in ("a", "b")]
    assert all(holder.acquire() for holder in holders)
    other = RunLock(tmp_path / "c")
    assert other.acquire()
    try:
        env = children_environment(holders)
        assert all(RunLock(tmp_path / name).acquire_or_inherit(env) for name in ("a", "b"))
        assert not RunLock(tmp_path / "c").acquire_or_inherit(env)
    finally:
        for lock in (*holders, other):
            lock.release()


def test_the_protocol_runner_passes_its_lock_to_the_command_it_runs(tmp_path, monkeypatch):
    """A script's run (experiments/protocols.py) holds the run's lock; the command it starts
    goes on under it (it would exit 3 if it were refused)."""
    import sys
    from pathlib import Path

    from experiments import protocols

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    run_dir = tmp_path / "run"
    child = (
        "import sys; from experiments.locks import RunLock; "
        "sys.exit(0 if RunLock(sys.argv[1]).acquire_or_inherit() else 3)"
    )
    command = (sys.executable, "-c", child, str(run_dir))
    protocols._run_locked(protocols.Run("fewshot", "CoOp", "dtd", 1, True, str(run_dir), command))
    assert not (run_dir / ".run.lock").exists()  # released after the command
