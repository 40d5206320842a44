"""train.py end to end under faults: a second process on a run in progress, a kill -9 during a
checkpoint write, a full file system. Each time the run ends exactly as an uninterrupted one."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")

from devkit.synthetic_data import write_caltech101  # noqa: E402
from devkit.train_runs import cli_args, run_in_process  # noqa: E402
from experiments.atomic import GATE_VARIABLE, PAUSE_VARIABLE  # noqa: E402
from experiments.locks import LOCK_NAME, TOKEN_VARIABLE  # noqa: E402
from experiments.run_record import read_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COOP_YAML = "configs/trainers/CoOp/rn50.yaml"
CHECKPOINT = Path("prompt_learner") / "model.pth.tar-2"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=4, images_per_class=8)


def command(run_dir: Path, data_root: Path, clip_file: Path) -> list[str]:
    """The same train.py command for every run of this module (2 epochs of CoOp)."""
    return [sys.executable, "train.py", *cli_args("CoOp", COOP_YAML, run_dir, data_root, clip_file)]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_VARIABLE, TOKEN_VARIABLE)}
    return {**env, **extra}


def run(args: list[str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=environment(**extra), capture_output=True, text=True, timeout=300
    )


def start_paused(args: list[str], pause_at: str, **extra: str) -> subprocess.Popen:
    """Start train.py and return once it stopped before renaming a file whose path has
    ``pause_at`` (experiments/atomic.py's test hook)."""
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=environment(**{PAUSE_VARIABLE: pause_at}, **extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("paused writing"):
            return process
    process.wait()
    raise AssertionError(f"train.py ended without pausing at {pause_at}:\n{''.join(seen)[-3000:]}")


def result(run_dir: Path) -> tuple[torch.Tensor, float, str]:
    """The learned context, the recorded accuracy and status of a run."""
    checkpoint = torch.load(run_dir / CHECKPOINT, weights_only=True)
    record = read_record(run_dir)
    return checkpoint["state_dict"]["ctx"], record.accuracy, record.status


def same_result(run_dir: Path, reference: Path) -> bool:
    (ctx, accuracy, status), (ref_ctx, ref_accuracy, _) = result(run_dir), result(reference)
    return torch.equal(ctx, ref_ctx) and accuracy == ref_accuracy and status == "finished"


def files_of(run_dir: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (mtime_ns, content hash)} of every file under ``run_dir``."""
    return {
        str(path.relative_to(run_dir)): (
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in run_dir.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def lone_run(tmp_path_factory, data_root, tiny_clip_files) -> Path:
    """The reference: the command run alone, uninterrupted (in this process: no start-up)."""
    run_dir = tmp_path_factory.mktemp("lone") / "run"
    run_in_process(command(run_dir, data_root, tiny_clip_files["RN"])[2:])
    return run_dir


def test_second_train_py_on_a_run_in_progress_is_refused_and_writes_nothing(
    tmp_path, data_root, tiny_clip_files, lone_run
):
    """The second process names the holder and exits non-zero, the run's files untouched; the
    first finishes with the lone run's result, bit for bit."""
    run_dir, gate = tmp_path / "run", tmp_path / "gate"
    args = command(run_dir, data_root, tiny_clip_files["RN"])
    first = start_paused(args, "state.pth", **{GATE_VARIABLE: str(gate)})
    try:
        before = files_of(run_dir)
        with pytest.raises(SystemExit) as second:  # train.py's command line, in this process
            run_in_process(args[2:])
        message = str(second.value.code)
        assert message.startswith("error: --output-dir") and "Traceback" not in message
        assert f"is being run by pid {first.pid} on {socket.gethostname()}, since " in message
        assert files_of(run_dir) == before
    finally:
        gate.touch()
        first.communicate(timeout=300)
    assert first.returncode == 0
    assert same_result(run_dir, lone_run)
    assert not (run_dir / LOCK_NAME).exists()


def test_kill_during_a_checkpoint_write_then_the_same_command_resumes_exactly(
    tmp_path, data_root, tiny_clip_files, lone_run
):
    """kill -9 while the last checkpoint is being written: no half file is left under its name,
    the dead holder's lock does not block, and rerunning ends as the lone run did."""
    run_dir = tmp_path / "run"
    args = command(run_dir, data_root, tiny_clip_files["RN"])
    killed = start_paused(args, str(CHECKPOINT))
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert not (run_dir / CHECKPOINT).exists()
    assert (run_dir / LOCK_NAME).exists()  # left by the killed holder

    run_in_process(args[2:])  # the same command again (in this process: no start-up)
    assert same_result(run_dir, lone_run)
    assert not list((run_dir / "prompt_learner").glob(".*.tmp"))


@pytest.fixture
def small_file_system(tmp_path) -> Path:
    """A 1 MiB tmpfs, unmounted afterwards; skipped where mounting is not allowed."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small file system")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_at_the_checkpoint_write_is_named_then_the_same_command_finishes_exactly(
    small_file_system, data_root, tiny_clip_files, lone_run
):
    """Out of space while writing the checkpoint: one paragraph naming the path and the fix, no
    traceback; after freeing space the same command ends as the lone run did."""
    run_dir = small_file_system / "run"
    page = 4096
    rounded = {p: -(-p.stat().st_size // page) * page for p in lone_run.rglob("*") if p.is_file()}
    checkpoint_size = rounded[lone_run / CHECKPOINT]
    others = sum(size for path, size in rounded.items() if "prompt_learner" not in path.parts)
    room = others + 6 * page  # every other file fits (with temporaries); the checkpoint does not
    assert room < checkpoint_size
    filler = small_file_system / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_file_system).free - room))

    args = command(run_dir, data_root, tiny_clip_files["RN"])
    full = run(args)
    assert full.returncode != 0
    message = full.stderr
    assert "error: could not write the checkpoint of epoch 2 to" in message, message[-3000:]
    assert str(run_dir / CHECKPOINT) in message and "the file system is full" in message
    assert "run the same command again" in message and "Traceback" not in message
    assert not (run_dir / CHECKPOINT).exists()

    filler.unlink()
    run_in_process(args[2:])  # the same command again (in this process: no start-up)
    assert same_result(run_dir, lone_run)
