"""tools/sweep.py: the runs it plans, its checks, and real sweeps on Slurm and the local pool.

The slow tests run real train.py jobs (tiny CLIP, synthetic Caltech101, CPU): on a throwaway
single-node Slurm cluster (devkit/slurm_cluster.py; skipped where Slurm is not installed) and in
submitit's local executor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import protocols
from experiments.locks import RunLock, live_holder
from experiments.protocols import Settings, log_files

pytest.importorskip(
    "submitit", reason="submitit is not installed (pip install -r requirements.txt)"
)
from devkit.slurm_cluster import start_cluster, unavailable_reason  # noqa: E402
from devkit.synthetic_data import write_caltech101  # noqa: E402
from experiments import sweep as sweep_tool  # noqa: E402
from experiments.sweep_jobs import run_unit  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANT = "nctx16_cscFalse_ctpend"
COMMON_OPTS = (
    "INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 64 "
    "TRAINER.COOP.PREC fp32"
)
# A run long enough to interrupt mid-epoch: 8 classes x 16 shots, batch 1: 128 steps per epoch.
LONG = {
    "EPOCHS": "3",
    "opts": "DATALOADER.TRAIN_X.BATCH_SIZE 1 OPTIM.WARMUP_EPOCH 1 TRAIN.PRINT_FREQ 1",
}
LONG_ARGS = ("--datasets", "caltech101", "--shots", "16", "--seeds", "1")
SHORT = {"EPOCHS": "2", "opts": "DATALOADER.TRAIN_X.BATCH_SIZE 4 OPTIM.WARMUP_EPOCH 0"}
SHORT_ARGS = ("--datasets", "caltech101", "--shots", "2", "--seeds", "1")
SLURM_FLAGS = ("--cluster", "slurm", "--gpus", "0", "--cpus", "1", "--mem", "500M", "--time", "20")


def long_run_dir(output: Path, method: str = "ProGrad") -> Path:
    return output / "caltech101" / method / "rn50_16shots" / f"{VARIANT}_epochs3" / "seed1"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The synthetic Caltech101 of the real runs (which need Dassl: skipped without it)."""
    pytest.importorskip("dassl", reason="upstream Dassl is not installed (see README: Install)")
    return write_caltech101(tmp_path_factory.mktemp("data"), num_classes=8, images_per_class=40)


def environment(
    output: Path, data: Path, clip: Path, kind: dict, cuda: bool = False, **extra: str | None
) -> dict:
    """The sweep's environment: DATA, OUTPUT, EPOCHS, EXTRA_OPTS, one CPU thread per run; the
    runs use the CPU unless ``cuda``."""
    env = dict(os.environ)
    device = "" if cuda else " USE_CUDA False"
    env.update(
        DATA=str(data),
        OUTPUT=str(output),
        EPOCHS=kind["EPOCHS"],
        EXTRA_OPTS=f"MODEL.BACKBONE.PATH {clip} {COMMON_OPTS} {kind['opts']}{device}",
        OMP_NUM_THREADS="1",
        OUTDATED_IGNORE="1",
    )
    env.update(extra)
    return {key: value for key, value in env.items() if value is not None}


def sweep(*args: str, env: dict, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python tools/sweep.py ARGS`` as a user runs it, from another folder."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "sweep.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ctx(run_dir: Path, epoch: int):
    import torch

    checkpoint = run_dir / "prompt_learner" / f"model.pth.tar-{epoch}"
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]["ctx"]


def wait_for(condition, what: str, timeout: float = 300.0, context=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{context()}")
        time.sleep(0.1)


def totals(status_output: str) -> list[str]:
    """done, running, queued, failed, new of ``sweep.py status``'s total line."""
    (line,) = [line for line in status_output.splitlines() if line.startswith("total")]
    return line.split()[1:]


def log_has(path: Path, text: str) -> bool:
    return path.is_file() and text in path.read_text(errors="replace")


# ----------------------------------------------------------------------------------------------
# Planning and checks (fast)


def test_units_put_each_evaluation_after_the_training_it_loads():
    """base2new: train_base, test_base, test_new per seed; xd: the ImageNet run, then targets."""
    settings = Settings(data="/d", output="/o", dry_run=True)
    units, _ = sweep_tool.plan_sweep("base2new", ["ProGrad"], ["dtd", "imagenet"], None, settings)
    assert len(units) == 6
    for unit in units:
        train, *tests = unit
        assert train.training and [run.model_dir for run in tests] == [train.run_dir] * 2
        assert [Path(run.run_dir).parts[3] for run in tests] == ["test_base", "test_new"]
    units, _ = sweep_tool.plan_sweep("xd", ["CoOp"], ["imagenet_a", "dtd"], None, settings)
    assert [len(unit) for unit in units] == [3, 3, 3]
    assert units[0][0].dataset == "imagenet" and units[0][0].training
    units, _ = sweep_tool.plan_sweep("fewshot", ["CoOp"], ["dtd"], [1, 2], settings)
    assert [len(unit) for unit in units] == [1] * 6


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("fewshot", "--trainers", "Prograd"), {}, "unknown method 'Prograd'"),
        (("fewshot",), {}, "--trainers is required for fewshot"),
        (("base2new", "--trainers", "LinearProbeCLIP"), {}, "LinearProbeCLIP has no base2new"),
        (("zeroshot", "--trainers", "ProGrad"), {}, "zeroshot runs ZeroshotCLIP only"),
        (
            ("fewshot", "--trainers", "CoOp", "--datasets", "caltech"),
            {},
            "configs/datasets/caltech",
        ),
        (("fewshot", "--trainers", "CoOp", "--cfg", "rn51"), {}, "configs/trainers/CoOp/rn51.yaml"),
        (("fewshot", "--trainers", "CoOp", "--seeds", "one"), {}, "--seeds one: give integers"),
        (("fewshot", "--trainers", "CoOp", "--shots", "0"), {}, "--shots 0: give integers >= 1"),
        (("xd", "--trainers", "CoOp", "--datasets", "imagenet"), {}, "imagenet is the source"),
        (("fewshot", "--trainers", "CoOp"), {"DATA": None}, "DATA is not set"),
        (("fewshot", "--trainers", "CoOp"), {"EXTRA_OPTS": "SEED"}, "not KEY VALUE pairs"),
        (("fewshot", "--trainers", "CoOp"), {"LAMBDA": "high"}, "LAMBDA=high is not a number"),
        # --workers 0, --poll -1, ...: refused by argparse (experiments/cli.py), test_tool_flags.py
        (
            ("fewshot", "--trainers", "CoOp", "--subs", "new"),
            {},
            "--subs is for base2new, zeroshot, not fewshot",
        ),
        (("zeroshot", "--seeds", "1"), {}, "--seeds is for fewshot, base2new, xd, not zeroshot"),
        (("fewshot", "--trainers", "CoOp", "--partition", "gpu"), {}, "--partition: Slurm options"),
        (
            ("fewshot", "--trainers", "CoOp", "--cluster", "slurm"),
            {"PATH": "/nowhere"},
            "no sbatch",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_submitted(tmp_path, args, env, message):
    """Bad flags, names or environment: one clear error line, exit 2, no sweep record written."""
    settings = {"DATA": str(tmp_path), "OUTPUT": str(tmp_path / "out"), **env}
    settings = {k: v for k, v in {**os.environ, **settings}.items() if v is not None}
    cluster = () if "--cluster" in args else ("--cluster", "local")
    completed = sweep(*args, *cluster, env=settings, cwd=tmp_path, timeout=60)
    assert completed.returncode == 2, completed
    assert completed.stderr.startswith("error: ") and message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_finished_unfinished_and_new_runs_and_submits_nothing(tmp_path):
    """--dry-run: each run with its state, what would be submitted, and no record written."""
    output = tmp_path / "out"
    runs = [output / "dtd" / "ProGrad" / "rn50_1shots" / VARIANT / f"seed{s}" for s in (1, 2, 3)]
    runs[0].mkdir(parents=True)
    (runs[0] / "log.txt").write_text("Finish training\n=> result\n* accuracy: 50.0%\n")
    runs[1].mkdir(parents=True)
    (runs[1] / "log.txt").write_text("epoch [1/50] batch [1/1]\n")
    env = {**os.environ, "DATA": str(tmp_path), "OUTPUT": str(output)}
    completed = sweep(
        "fewshot", "--trainers", "ProGrad", "--datasets", "dtd", "--shots", "1",
        "--cluster", "local", "--dry-run", env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert "sweep fewshot: 3 runs (1 finished, 0 running, 1 unfinished, 1 new)" in lines[0]
    for state, run_dir in zip(("finished", "unfinished", "new"), runs, strict=True):
        assert f"  {state:<10} train {run_dir}" in lines
    assert "would submit 2 runs in 2 unit(s) to 1 local worker(s) on the CPU" in lines[-1]
    assert not (output / sweep_tool.SWEEPS).exists() and not runs[2].exists()


def test_local_gpus_follow_cuda_visible_devices(monkeypatch):
    """The local pool's GPUs are CUDA_VISIBLE_DEVICES's entries; an empty value means none."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert sweep_tool.visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert sweep_tool.visible_gpus() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("90", 90), ("1:30:00", 90), ("12:00:00", 720), ("1-00:00:00", 1440), ("2-3", 3060)],
)
def test_time_limits_read_as_slurm_writes_them(value, expected):
    """--time takes Slurm's formats (minutes, H:M:S, D-H[:M:S]) and submits minutes."""
    assert sweep_tool.minutes(value) == expected


FAKE_TRAIN_PY = """import sys
from pathlib import Path

args = sys.argv[1:]
output = Path(args[args.index("--output-dir") + 1])
output.mkdir(parents=True, exist_ok=True)
if "FAIL" in args:
    (output / "log.txt").write_text("epoch [1/2] batch [1/1]\\n")
    sys.exit("error: LOSS.LAMBDA is 2.0; it must lie in [0, 1]")
(output / "prompt_learner").mkdir(exist_ok=True)
(output / "prompt_learner" / "model.pth.tar-2").write_text("checkpoint")
(output / "log.txt").write_text("Finish training\\n=> result\\n* accuracy: 50.0%\\n")
"""


def stand_in_unit(tmp_path: Path, *training_opts: str) -> list[protocols.Run]:
    """A base-to-new unit whose commands run a stand-in train.py in ``tmp_path``."""
    (tmp_path / "train.py").write_text(FAKE_TRAIN_PY)
    train = tmp_path / "out" / "train"
    runs = [
        protocols.Run(
            "base2new",
            "ProGrad",
            "dtd",
            1,
            True,
            str(train),
            (sys.executable, "train.py", "--output-dir", str(train), *training_opts),
        )
    ]
    for sub in ("base", "new"):
        run_dir = str(tmp_path / "out" / sub)
        command = (sys.executable, "train.py", "--output-dir", run_dir)
        runs.append(protocols.Run("base2new", "ProGrad", "dtd", 1, False, run_dir, command,
                                  str(train), 2, "train it"))  # fmt: skip
    return runs


def test_a_unit_runs_its_evaluations_after_its_training(tmp_path):
    """Training, then each evaluation; a second pass finds them finished and runs nothing."""
    runs = stand_in_unit(tmp_path)
    outcomes = run_unit(runs, str(tmp_path), str(tmp_path / "sweep"), os.environ)
    assert list(outcomes.values()) == ["done", "done", "done"]
    stamp = [Path(run.run_dir, "log.txt").stat().st_mtime_ns for run in runs]
    assert run_unit(runs, str(tmp_path), str(tmp_path / "sweep"), os.environ) == outcomes
    assert [Path(run.run_dir, "log.txt").stat().st_mtime_ns for run in runs] == stamp


def test_a_failed_training_stops_its_unit_and_records_why(tmp_path):
    """A failing training: its evaluations do not run; the record names the log and the error."""
    runs = stand_in_unit(tmp_path, "FAIL")
    outcomes = run_unit(runs, str(tmp_path), str(tmp_path / "sweep"), os.environ)
    assert list(outcomes.values()) == ["failed", "not run", "not run"]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "sweep" / "failures").iterdir()]
    assert record["last_error"] == "error: LOSS.LAMBDA is 2.0; it must lie in [0, 1]"
    assert record["log"] == str(Path(runs[0].run_dir) / "log.txt") and record["exit_code"] == 1
    assert not Path(runs[1].run_dir).exists()


def test_a_unit_held_elsewhere_is_left_to_its_holder(tmp_path):
    """A run locked by a live process is not run again; the rest of its unit waits for it."""
    runs = stand_in_unit(tmp_path)
    lock = RunLock(runs[0].run_dir)
    assert lock.acquire()
    try:
        outcomes = run_unit(runs, str(tmp_path), str(tmp_path / "sweep"), os.environ)
    finally:
        lock.release()
    assert list(outcomes.values()) == ["busy", "not run", "not run"]
    assert not (Path(runs[0].run_dir) / "log.txt").exists()


def test_status_counts_runs_per_cell(tmp_path):
    """status: done, running (a live lock), queued (a live worker's unit), failed, new."""
    output = tmp_path / "out"
    settings = Settings(data="/d", output=str(output), seeds=(1, 2, 3, 4, 5), dry_run=True)
    units, _ = sweep_tool.plan_sweep("fewshot", ["CoOp"], ["dtd"], [4], settings)
    dirs = [Path(unit[0].run_dir) for unit in units]
    dirs[0].mkdir(parents=True)
    (dirs[0] / "log.txt").write_text("Finish training\n=> result\n* accuracy: 60.0%\n")
    lock = RunLock(dirs[1])
    assert lock.acquire()
    folder = output / sweep_tool.SWEEPS / "a"
    folder.mkdir(parents=True)
    worker = {"pid": os.getpid(), "start": "", "host": sweep_tool.socket.gethostname()}
    sweep_tool.Sweep(folder, "fewshot", "local", units[:3], workers=[worker]).save()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    folder = output / sweep_tool.SWEEPS / "b"
    folder.mkdir(parents=True)
    worker = {"pid": int(dead), "start": "", "host": sweep_tool.socket.gethostname()}
    sweep_tool.Sweep(folder, "fewshot", "local", units[3:], workers=[worker]).save()
    dirs[3].mkdir(parents=True)  # started, then its worker died
    try:
        completed = sweep("status", str(output), env=dict(os.environ), cwd=tmp_path, timeout=60)
    finally:
        lock.release()
    assert completed.returncode == 0, completed.stderr
    (row,) = [line.split() for line in completed.stdout.splitlines() if line.startswith("few")]
    assert row == ["fewshot", "CoOp", "rn50", "4", "dtd", "all", "1", "1", "1", "1", "1"]
    assert f"failed: {dirs[3]}" in completed.stdout


# ----------------------------------------------------------------------------------------------
# Real sweeps (slow)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root, tiny_clip_files) -> Path:
    """The long ProGrad run, uninterrupted, straight through train.py."""
    output = tmp_path_factory.mktemp("reference")
    env = environment(output, data_root, tiny_clip_files["RN"], LONG)
    settings = protocols.settings_from_environment(env)
    plan = protocols.plan_fewshot("ProGrad", "caltech101", "rn50", 16, settings, REPO_ROOT)
    (run,) = plan.runs[:1]
    command = [sys.executable, *run.command[1:]]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(run.run_dir)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster for this module's tests (skipped where Slurm is missing)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with start_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


def job_listed(job: str, env: dict) -> str:
    """Slurm's state of a job ("" once it is gone)."""
    result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env,
                            capture_output=True, text=True)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def manifest(output: Path) -> dict:
    (path,) = (output / sweep_tool.SWEEPS).glob("*/manifest.json")
    return json.loads(path.read_text())


def job_logs(output: Path) -> str:
    return "\n".join(p.read_text()[-2000:] for p in output.glob(".sweeps/*/jobs/*/*.err"))


@pytest.mark.slow
def test_slurm_sweep_runs_as_a_job_array_once_even_when_submitted_twice_at_once(
    tmp_path, slurm, data_root, tiny_clip_files
):
    """CoOp and ProGrad as a job array, submitted twice at the same moment: each run trains
    once, both finish, the tables read both cells, and a third submission submits nothing."""
    output = tmp_path / "out"
    env = environment(output, data_root, tiny_clip_files["RN"], SHORT, **slurm)
    args = ("fewshot", "--trainers", "CoOp", "ProGrad", *SHORT_ARGS, *SLURM_FLAGS)
    command = [
        sys.executable,
        str(REPO_ROOT / "tools" / "sweep.py"),
        *args,
        "--wait",
        "--poll",
        "1",
    ]
    submissions = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [submission.communicate(timeout=600) for submission in submissions]
    for submission, (stdout, stderr) in zip(submissions, results, strict=True):
        assert submission.returncode == 0, stdout + stderr + job_logs(output)
        assert "2 done (of 2 runs)" in stdout or "nothing to submit" in stdout
    first = json.loads(min((output / sweep_tool.SWEEPS).glob("*/manifest.json")).read_text())
    assert len(first["jobs"]) == 2 and len({job.split("_")[0] for job in first["jobs"]}) == 1
    run_dirs = [p.parent for p in output.glob("caltech101/*/rn50_2shots/*/seed1/log.txt")]
    assert len(run_dirs) == 2
    for run_dir in run_dirs:  # trained once: one log, no log.txt-<time> of a second start
        assert [log.name for log in log_files(run_dir)] == ["log.txt"]

    from experiments.results import aggregate, collect_runs, fewshot_tables

    tables = fewshot_tables(aggregate(collect_runs(output).runs))
    assert sorted(table.title.split(":")[1].split(" [")[0].strip() for table in tables) == [
        "CoOp",
        "ProGrad",
    ]
    for table in tables:
        assert table.rows[0][0] == "Caltech101" and table.rows[0][1] != "–"

    sweeps = len(list((output / sweep_tool.SWEEPS).iterdir()))
    again = sweep(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to submit" in again.stdout
    assert len(list((output / sweep_tool.SWEEPS).iterdir())) == sweeps
    status = sweep("status", str(output), env=env, cwd=tmp_path)
    assert totals(status.stdout) == ["2", "0", "0", "0", "0"]


@pytest.mark.slow
def test_slurm_run_requeued_then_cancelled_ends_as_an_uninterrupted_run(
    tmp_path, slurm, data_root, tiny_clip_files, reference
):
    """USR2 mid-epoch 2 (preemption): submitit requeues the job and it resumes by itself; scancel
    mid-epoch 3, then the same submission again: the final prompt equals the uninterrupted run's,
    bit for bit, and every log is kept."""
    output = tmp_path / "out"
    env = environment(output, data_root, tiny_clip_files["RN"], LONG, **slurm)
    args = ("fewshot", "--trainers", "ProGrad", *LONG_ARGS, *SLURM_FLAGS)
    completed = sweep(*args, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    (job,) = manifest(output)["jobs"]
    run_dir = long_run_dir(output)
    context = lambda: job_logs(output)  # noqa: E731

    wait_for(
        lambda: log_has(run_dir / "log.txt", "epoch [2/3] batch [5/"), "epoch 2", context=context
    )
    subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True)
    wait_for(lambda: job_listed(job, env) == "PENDING", "the requeue", context=context)

    def second() -> Path:
        resumed = [log for log in log_files(run_dir) if log.name != "log.txt"]
        return resumed[0] if resumed else run_dir / "none"

    wait_for(lambda: log_has(second(), "epoch [3/3] batch [5/"), "epoch 3", context=context)
    subprocess.run(["scancel", job], env=env, check=True)
    wait_for(lambda: job_listed(job, env) == "", "the cancellation", context=context)
    assert not protocols.is_finished(run_dir, True)

    completed = sweep(*args, "--wait", "--poll", "1", env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr + job_logs(output)
    first, resumed, final = log_files(run_dir)
    assert first.name == "log.txt" and "epoch [2/3]" in first.read_text()
    assert "Finish training" not in first.read_text() + resumed.read_text()
    assert "Resuming from" in resumed.read_text() and "Resuming from" in final.read_text()
    assert "Finish training" in final.read_text()
    assert ctx(run_dir, 3).equal(ctx(reference, 3))


@pytest.mark.slow
def test_local_pool_resumes_a_cancelled_workers_run_exactly(
    tmp_path, data_root, tiny_clip_files, reference
):
    """Two local workers (ProGrad, CoOp): the ProGrad worker is cancelled mid-epoch 2; the other
    worker resumes it; the prompt equals the uninterrupted run's; resubmitting submits nothing."""
    output = tmp_path / "out"
    env = environment(output, data_root, tiny_clip_files["RN"], LONG)
    args = ("fewshot", "--trainers", "ProGrad", "CoOp", *LONG_ARGS, "--cluster", "local")
    submission = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "tools" / "sweep.py"), *args, "--workers", "2",
         "--wait", "--poll", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = long_run_dir(output)
    try:
        wait_for(lambda: log_has(run_dir / "log.txt", "epoch [2/3] batch [5/"), "epoch 2")
        holder = live_holder(run_dir)
        workers = [worker["pid"] for worker in manifest(output)["workers"]]
        assert holder is not None and len(workers) == 2
        os.kill(holder.pid, signal.SIGINT)  # cancel the worker's job, as LocalJob.cancel() does
        stdout, stderr = submission.communicate(timeout=600)
    finally:
        if submission.poll() is None:
            submission.kill()
    assert submission.returncode == 0, stdout + stderr
    assert "2 done (of 2 runs)" in stdout
    first, resumed = log_files(run_dir)
    assert "Finish training" not in first.read_text() and "epoch [2/3]" in first.read_text()
    assert "Resuming from" in resumed.read_text()
    assert ctx(run_dir, 3).equal(ctx(reference, 3))
    assert protocols.is_finished(long_run_dir(output, "CoOp"), True)
    again = sweep(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to submit" in again.stdout


@pytest.mark.slow
def test_wait_lists_a_failed_run_with_its_log_and_last_error(tmp_path, data_root, tiny_clip_files):
    """A run train.py refuses: --wait ends non-zero naming the run, its log and the error."""
    output = tmp_path / "out"
    env = environment(output, data_root, tiny_clip_files["RN"], SHORT, LAMBDA="2.0")
    completed = sweep(
        "fewshot", "--trainers", "ProGrad", *SHORT_ARGS, "--cluster", "local", "--wait",
        "--poll", "1", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stdout + completed.stderr
    run_dir = output / "caltech101" / "ProGrad" / "rn50_2shots"
    run_dir = run_dir / f"{VARIANT}_lambda2.0_epochs2" / "seed1"
    # Refused before anything is written (trainers/inputs.py check_values): no log.
    assert f"failed: {run_dir}\n  log: (no log)\n" in completed.stdout
    assert "failed (exit 1): error: LOSS.LAMBDA is 2.0; it takes a number in [0, 1]" in (
        completed.stdout
    )
    status = sweep("status", str(output), env=env, cwd=tmp_path)
    assert totals(status.stdout) == ["0", "0", "0", "1", "0"]


@pytest.mark.slow
def test_local_workers_each_see_only_their_own_gpu(tmp_path, data_root, tiny_clip_files):
    """On a GPU machine: one worker per GPU, each run on one GPU (no DataParallel), on CUDA."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    output = tmp_path / "out"
    env = environment(output, data_root, tiny_clip_files["RN"], SHORT, cuda=True)
    completed = sweep(
        "fewshot", "--trainers", "CoOp", "ProGrad", *SHORT_ARGS, "--cluster", "local", "--wait",
        "--poll", "1", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    gpus = sweep_tool.visible_gpus()
    devices = [worker["device"] for worker in manifest(output)["workers"]]
    assert devices == gpus and all("," not in device for device in devices)
    for log in output.glob("caltech101/*/rn50_2shots/*/seed1/log.txt"):
        text = log.read_text()
        assert "Finish training" in text and "Multiple GPUs detected" not in text
        assert "USE_CUDA: True" in text
