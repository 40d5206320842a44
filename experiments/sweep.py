"""The paper's sweeps beyond one serial loop: Slurm job arrays or a local pool, through submitit.

Usage (any folder; DATA, OUTPUT, EXTRA_OPTS, EPOCHS, LAMBDA, NCTX, CSC, CTP, LOADEP, PYTHON are
read from the environment as by the run scripts):

    python tools/sweep.py fewshot  --trainers ProGrad CoOp [--datasets all] [--shots 1 2 4 8 16]
    python tools/sweep.py base2new --trainers ProGrad CoOp [--datasets all]
    python tools/sweep.py xd       --trainers ProGrad CoOp [--datasets all]   (targets)
    python tools/sweep.py zeroshot [--cfg rn50] [--subs all base new]
        [--cfg CFG] [--seeds 1 2 3] [--cluster auto|slurm|local] [--dry-run] [--wait]
        Slurm: [--partition P] [--gpus 1] [--cpus 8] [--mem 32G] [--time 12:00:00]
               [--account A] [--qos Q] [--parallel 64]
        local: [--workers N]   (default: one per visible GPU, each seeing only its GPU; 1 on CPU)
    python tools/sweep.py status [OUTPUT]

The runs, their directories and what counts as finished come from experiments/protocols.py, the
definition the run scripts and the tables tool use. A finished run is never submitted again,
an unfinished one resumes where it stopped, and each run trains under a lock (see
experiments/sweep_jobs.py). Everything is checked before anything is submitted. Each submission
keeps its record in ``$OUTPUT/.sweeps/<time>-<protocol>/``: manifest.json, submitit's job
folders and logs, failure records and the runs' stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path

from experiments import protocols
from experiments.atomic import write_text
from experiments.cli import non_negative_int, positive_float, positive_int
from experiments.locks import LOCK_NAME, live_holder, process_alive, process_start
from experiments.protocols import (
    DG_TARGETS,
    FEWSHOT_DATASETS,
    METHODS,
    PAPER_SHOTS,
    ZERO_SHOT,
    ProtocolError,
    Run,
    Settings,
    classify,
    is_finished,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ".sweeps"
STATES = ("done", "running", "queued", "failed", "new")
# Defaults sized for one ProGrad run on one GPU (Dassl's loaders use 8 workers).
SLURM_DEFAULTS = {
    "partition": None,
    "gpus": 1,
    "cpus": 8,
    "mem": "32G",
    "time": "12:00:00",
    "account": None,
    "qos": None,
    "parallel": 64,
}
MAX_ARRAY_SIZE = 1000  # Slurm's default MaxArraySize is 1001
MAX_REQUEUES = 10  # time limits or preemptions a unit may go through (submitit's countdown)
DATASETS_OF = {
    "fewshot": FEWSHOT_DATASETS,
    "base2new": protocols.BASE2NEW_DATASETS,
    "xd": DG_TARGETS + protocols.XD_TARGETS,
    "zeroshot": FEWSHOT_DATASETS + DG_TARGETS,
}


class SweepError(ValueError):
    """Bad flags or environment; raised before anything is submitted."""


# ----------------------------------------------------------------------------------------------
# The runs of a sweep


def expand(values: Sequence[str] | None) -> list[str]:
    """Flag values as a list, accepting "a b" and "a,b"."""
    return [word for value in values or () for word in value.replace(",", " ").split()]


def integers(flag: str, values: Sequence[str] | None, minimum: int) -> list[int] | None:
    words = expand(values)
    if not words:
        return None
    for word in words:
        if not word.isdigit() or int(word) < minimum:
            raise SweepError(f"{flag} {word}: give integers >= {minimum}, e.g. {flag} 1 2 3.")
    return [int(word) for word in words]


def sweep_settings(args: argparse.Namespace, environ: dict[str, str]) -> Settings:
    """The scripts' settings from the environment, then the flags, with absolute paths."""
    settings = protocols.settings_from_environment(environ, script="python tools/sweep.py")
    seeds = integers("--seeds", args.seeds, 0)
    subs = expand(args.subs) or None
    return replace(
        settings,
        data=None if settings.data is None else str(Path(settings.data).resolve()),
        output=str(Path(settings.output).resolve()),
        python=environ.get("PYTHON") or sys.executable,
        dry_run=args.dry_run or settings.dry_run,
        seeds=tuple(seeds) if seeds else settings.seeds,
        cfg=args.cfg or settings.cfg,
        subs=tuple(subs) if subs else settings.subs,
    )


def sweep_methods(protocol: str, names: Sequence[str] | None) -> list[str]:
    """The --trainers of a sweep (method names), each checked to have the protocol."""
    if protocol == "zeroshot":
        if any(name != ZERO_SHOT for name in expand(names)):
            raise SweepError(f"zeroshot runs {ZERO_SHOT} only; drop --trainers.")
        return [ZERO_SHOT]
    methods = expand(names)
    if not methods:
        raise SweepError(
            f"--trainers is required for {protocol}; give method names, e.g. --trainers ProGrad "
            f"CoOp (methods with {protocol}: {', '.join(protocols.methods_with(protocol))})."
        )
    for name in methods:
        method = protocols.method_named(name)
        if protocol not in method.defaults:
            raise SweepError(
                f"--trainers {name}: {name} has no {protocol} protocol (it has "
                f"{', '.join(method.defaults)}); methods with {protocol}: "
                f"{', '.join(protocols.methods_with(protocol))}."
            )
    return methods


def sweep_datasets(protocol: str, names: Sequence[str] | None) -> list[str]:
    """The --datasets of a sweep; "all" (the default) is every dataset of the protocol."""
    words = expand(names)
    if not words or words == ["all"]:
        return list(DATASETS_OF[protocol])
    if "all" in words:
        raise SweepError("--datasets all stands alone; give either all or dataset names.")
    if protocol == "xd" and protocols.SOURCE_DATASET in words:
        raise SweepError(
            "--datasets for xd are the targets; imagenet is the source and is always trained."
        )
    return words


def group_units(runs: Sequence[Run]) -> list[list[Run]]:
    """Units: each training run followed by the evaluations that load it; other runs alone."""
    units: list[list[Run]] = []
    by_training: dict[str, list[Run]] = {}
    for run in runs:
        if run.model_dir is not None and run.model_dir in by_training:
            by_training[run.model_dir].append(run)
            continue
        unit = [run]
        units.append(unit)
        if run.training:
            by_training[run.run_dir] = unit
    return units


def plan_sweep(
    protocol: str,
    methods: Sequence[str],
    datasets: Sequence[str],
    shots: Sequence[int] | None,
    settings: Settings,
) -> tuple[list[list[Run]], list[str]]:
    """(units, notes) of a sweep, from the protocol definitions.

    Raises:
        ProtocolError: a dataset, config or setting the protocols refuse.
    """
    plans: list[protocols.Plan] = []
    root = REPO_ROOT
    for method in methods:
        defaults = METHODS[method].defaults[protocol]
        cfg = settings.cfg or defaults.cfg
        if protocol == "fewshot":
            for dataset in datasets:
                for k in shots or PAPER_SHOTS:
                    plans.append(protocols.plan_fewshot(method, dataset, cfg, k, settings, root))
        elif protocol == "base2new":
            for k in shots or [None]:
                local = replace(settings, shots=k or settings.shots)
                for dataset in datasets:
                    plans.append(protocols.plan_base2new_train(method, dataset, local, root))
                    plans.append(protocols.plan_base2new_test(method, dataset, local, root))
        elif protocol == "xd":
            for k in shots or [None]:
                local = replace(settings, shots=k or settings.shots)
                plans.append(protocols.plan_xd_train(method, local, root))
                targets = protocols.xd_targets(METHODS[method])  # None: any target
                for dataset in datasets:
                    if targets is not None and dataset not in targets:
                        reason = METHODS[method].xd_targets_reason
                        note = f"note: {method} is not evaluated on {dataset} ({reason})."
                        plans.append(protocols.Plan(notes=[note]))
                        continue
                    plans.append(protocols.plan_xd_test(method, dataset, local, root))
        else:
            local = replace(settings, subs=settings.subs or ("all", "base", "new"))
            for dataset in datasets:
                plans.append(protocols.plan_zeroshot(dataset, cfg, local, root))
    notes = list(dict.fromkeys(message for plan in plans for message in plan.notes))
    runs = [run for plan in plans for run in plan.runs]
    return group_units(runs), notes


# ----------------------------------------------------------------------------------------------
# Where runs stand


def slurm_alive(job_ids: Iterable[str]) -> set[str] | None:
    """The ids (``123_4``, ``123``) of the given jobs that Slurm still lists (pending, running,
    requeued...); None when squeue cannot tell."""
    arrays = sorted({job.split("_")[0] for job in job_ids})
    if not arrays:
        return set()
    try:
        result = subprocess.run(
            ["squeue", "-h", "-r", "-o", "%i", "-j", ",".join(arrays)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return set() if "Invalid job id" in result.stderr else None
    return set(result.stdout.split())


@dataclass
class Sweep:
    """A submission, as recorded in its manifest."""

    folder: Path
    protocol: str
    cluster: str
    units: list[list[Run]]
    jobs: list[str] = field(default_factory=list)  # Slurm: the array task of each unit
    workers: list[dict] = field(default_factory=list)  # local: pid, host, start, device
    created: float = 0.0

    def save(self) -> None:
        data = {
            "protocol": self.protocol,
            "cluster": self.cluster,
            "created": self.created,
            "jobs": self.jobs,
            "workers": self.workers,
            "units": [[asdict(run) for run in unit] for unit in self.units],
        }
        write_text(
            self.folder / "manifest.json", json.dumps(data, indent=1), "the sweep's manifest"
        )

    @classmethod
    def load(cls, folder: Path) -> Sweep:
        data = json.loads((folder / "manifest.json").read_text())
        units = [
            [Run(**{**run, "command": tuple(run["command"])}) for run in unit]
            for unit in data["units"]
        ]
        return cls(
            folder,
            data["protocol"],
            data["cluster"],
            units,
            data.get("jobs", []),
            data.get("workers", []),
            data.get("created", 0.0),
        )

    def alive_units(self, slurm: set[str] | None) -> set[int]:
        """Indexes of the units a live job of this sweep may still run."""
        if self.cluster == "local":
            here = socket.gethostname()
            alive = any(
                worker["host"] == here and process_alive(worker["pid"], worker["start"])
                for worker in self.workers
            )
            return set(range(len(self.units))) if alive else set()
        if slurm is None:  # squeue cannot tell: assume the jobs are there
            return set(range(len(self.jobs)))
        return {i for i, job in enumerate(self.jobs) if job in slurm}


def load_sweeps(output: Path) -> list[Sweep]:
    """Every submission recorded under an output folder, oldest first."""
    sweeps = []
    for manifest in sorted((output / SWEEPS).glob("*/manifest.json")):
        try:
            sweeps.append(Sweep.load(manifest.parent))
        except (OSError, ValueError, KeyError, TypeError):
            print(f"note: unreadable sweep record {manifest}; ignored.", file=sys.stderr)
    return sweeps


@dataclass
class RunStatus:
    run: Run
    state: str  # one of STATES
    failure: dict | None = None


def run_states(sweeps: Sequence[Sweep], extra_runs: Sequence[Run] = ()) -> list[RunStatus]:
    """Where every run of the given sweeps (and ``extra_runs``) stands now.

    done: a complete log; running: a live process holds its lock; queued: a live job of a
    sweep will get to it; failed: it stopped without finishing (a failure record says why);
    new: nothing will run it (never started, or its job ended before reaching it).
    """
    from experiments.sweep_jobs import read_failure  # needs submitit; only sweeps import it

    slurm_jobs = [job for sweep in sweeps if sweep.cluster == "slurm" for job in sweep.jobs]
    slurm = slurm_alive(slurm_jobs) if slurm_jobs else set()
    if slurm is None:
        _note_once(
            "note: squeue cannot be asked here; unfinished runs of Slurm sweeps show as queued."
        )
    runs: dict[str, Run] = {}
    queued: set[str] = set()
    failures: dict[str, dict] = {}
    for sweep in sweeps:
        alive = sweep.alive_units(slurm)
        for index, unit in enumerate(sweep.units):
            for run in unit:
                runs.setdefault(run.run_dir, run)
                if index in alive:
                    queued.add(run.run_dir)
                record = read_failure(sweep.folder, run.run_dir)
                previous = failures.get(run.run_dir)
                if record is not None and (previous is None or record["time"] >= previous["time"]):
                    failures[run.run_dir] = record
    for run in extra_runs:
        runs.setdefault(run.run_dir, run)
    statuses = []
    for run in runs.values():
        failure = failures.get(run.run_dir)
        if is_finished(run.run_dir, run.training):
            state, failure = "done", None
        elif live_holder(run.run_dir) is not None:
            state = "running"
        elif run.run_dir in queued:
            state = "queued"
        elif failure is not None or Path(run.run_dir).is_dir():
            state = "failed"
        else:
            state = "new"
        statuses.append(RunStatus(run, state, failure))
    return statuses


_NOTED: set[str] = set()


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        print(message, file=sys.stderr)


def runs_on_disk(output: Path) -> list[Run]:
    """Runs found under an output folder by their logs or locks (scripts' runs included)."""
    found = {path.parent for path in output.rglob("log.txt*") if SWEEPS not in path.parts}
    found |= {path.parent for path in output.rglob(LOCK_NAME) if SWEEPS not in path.parts}
    runs = []
    for run_dir in sorted(found):
        located = classify(run_dir.resolve().parts)
        if located is None:
            continue
        setting, seed, training = located
        runs.append(
            Run(
                setting.protocol, setting.trainer, setting.dataset, seed, training, str(run_dir), ()
            )
        )
    return runs


def describe_failure(status: RunStatus) -> str:
    """A failed run in a few lines: its directory, log, last error and stderr."""
    record = status.failure or {}
    logs = protocols.log_files(status.run.run_dir)
    log = record.get("log") or (str(logs[-1]) if logs else "(no log)")
    lines = [f"failed: {status.run.run_dir}", f"  log: {log}"]
    if record:
        outcome = record.get("outcome", "failed")
        code = record.get("exit_code")
        lines.append(
            f"  {outcome}{'' if code is None else f' (exit {code})'}: {record['last_error']}"
        )
        if record.get("stderr"):
            lines.append(f"  stderr: {record['stderr']}")
    else:
        lines.append("  stopped without a complete log (killed, or run outside a sweep)")
    return "\n".join(lines)


def cell_of(run: Run) -> tuple:
    """The table cell of a run: protocol, method, backbone, variant, shots, dataset, split."""
    located = classify(Path(run.run_dir).resolve().parts)
    if located is None:
        return (run.protocol, run.method, "?", "", 0, run.dataset, "all")
    setting = located[0]
    protocol = {"fewshot": "fewshot", "base2new": "base2new", "transfer": "xd"}[setting.protocol]
    if run.protocol == "xd" and run.training:
        protocol = "xd"  # the ImageNet source run of the transfer protocol
    if setting.trainer == ZERO_SHOT and setting.protocol == "fewshot":
        protocol = "zeroshot"
    return astuple(replace(setting, protocol=protocol))


def status_table(statuses: Sequence[RunStatus]) -> str:
    """done / running / queued / failed / new per protocol cell, and the totals."""
    from tabulate import tabulate

    cells: dict[tuple, Counter] = defaultdict(Counter)
    for status in statuses:
        cells[cell_of(status.run)][status.state] += 1
    rows = []
    for cell in sorted(cells, key=lambda c: tuple(str(part) for part in c)):
        protocol, method, backbone, variant, shots, dataset, split = cell
        variant = "" if protocols.is_default_variant(method, variant) else variant
        counts = cells[cell]
        rows.append(
            [protocol, method, backbone, variant, shots, dataset, split]
            + [counts[state] or "" for state in STATES]
        )
    totals = Counter(status.state for status in statuses)
    rows.append(["total", "", "", "", "", "", ""] + [totals[state] for state in STATES])
    headers = ["protocol", "method", "backbone", "variant", "shots", "dataset", "split"]
    return tabulate(rows, headers=headers + list(STATES), tablefmt="simple")


# ----------------------------------------------------------------------------------------------
# Executors


def visible_gpus() -> list[str]:
    """The GPUs of this machine as CUDA_VISIBLE_DEVICES entries (honouring the variable)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [gpu for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(line.startswith("GPU ") for line in listing.stdout.splitlines())
    return [str(index) for index in range(count)] if listing.returncode == 0 else []


def minutes(value: str) -> int:
    """A Slurm time (MM, HH:MM:SS, D-HH:MM:SS, D-HH) in whole minutes."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value)
    if match is None:
        raise SweepError(f"--time {value}: give a Slurm time, e.g. --time 12:00:00 or 1-00:00:00.")
    days, first, second, third = (int(group) if group else None for group in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        total = days * 1440 + first * 60 + (second or 0) + (third or 0) / 60
    elif third is not None:  # HH:MM:SS
        total = first * 60 + second + third / 60
    elif second is not None:  # MM:SS
        total = first + second / 60
    else:  # MM
        total = first
    if total <= 0:
        raise SweepError(f"--time {value} is not positive.")
    return math.ceil(total)


def executor_options(args: argparse.Namespace, cluster: str) -> dict:
    """The executor's options from the flags, checked; flags of the other cluster are refused."""
    slurm_flags = [name for name in SLURM_DEFAULTS if getattr(args, name) is not None]
    if cluster == "local":
        if slurm_flags:
            flags = " ".join(f"--{name}" for name in slurm_flags)
            raise SweepError(f"{flags}: Slurm options, but the sweep runs locally (--cluster).")
        gpus = visible_gpus()
        workers = args.workers if args.workers is not None else max(1, len(gpus))
        if workers < 1:
            raise SweepError(f"--workers {workers}: give at least 1.")
        return {"workers": workers, "gpus": gpus, "poll": min(args.poll, 10.0)}
    if args.workers is not None:
        raise SweepError("--workers is for --cluster local; on Slurm use --parallel.")
    options = {name: getattr(args, name) for name in SLURM_DEFAULTS}
    options = {name: SLURM_DEFAULTS[name] if v is None else v for name, v in options.items()}
    for name in ("gpus", "cpus", "parallel"):
        minimum = 0 if name == "gpus" else 1
        if not isinstance(options[name], int) or options[name] < minimum:
            raise SweepError(f"--{name} {options[name]}: give an integer >= {minimum}.")
    if not re.fullmatch(r"\d+[KMGT]?", str(options["mem"])):
        raise SweepError(f"--mem {options['mem']}: give a Slurm size, e.g. --mem 32G.")
    options["minutes"] = minutes(str(options["time"]))
    return options


def choose_cluster(requested: str) -> str:
    if requested == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    if requested == "slurm" and not shutil.which("sbatch"):
        raise SweepError(
            "--cluster slurm, but there is no sbatch on PATH; run on a Slurm login node, or use "
            "--cluster local."
        )
    return requested


def describe_executor(cluster: str, options: dict, units: int) -> str:
    if cluster == "local":
        gpus = options["gpus"]
        where = f"GPUs {', '.join(gpus)}" if gpus else "the CPU"
        return f"{options['workers']} local worker(s) on {where}, sharing {units} unit(s)"
    arrays = math.ceil(units / MAX_ARRAY_SIZE)
    resources = ", ".join(
        f"{name} {options[name]}"
        for name in ("partition", "gpus", "cpus", "mem", "time", "account", "qos")
        if options[name] is not None
    )
    return (
        f"Slurm: {arrays} job array(s), {units} task(s) (one per unit), at most "
        f"{options['parallel']} at once; per task {resources}"
    )


def submit_slurm(sweep: Sweep, options: dict) -> None:
    import submitit

    from experiments.sweep_jobs import UnitJob

    executor = submitit.SlurmExecutor(
        folder=sweep.folder / "jobs" / "%j", max_num_timeout=MAX_REQUEUES
    )
    parameters = {
        "job_name": f"sweep-{sweep.protocol}",
        "time": options["minutes"],
        "cpus_per_task": options["cpus"],
        "mem": options["mem"],
        "array_parallelism": options["parallel"],
        "signal_delay_s": 120,
    }
    if options["gpus"]:
        parameters["gpus_per_node"] = options["gpus"]
    for name in ("partition", "account", "qos"):
        if options[name]:
            parameters[name] = options[name]
    executor.update_parameters(**parameters)
    for start in range(0, len(sweep.units), MAX_ARRAY_SIZE):
        chunk = sweep.units[start : start + MAX_ARRAY_SIZE]
        with executor.batch():
            jobs = [
                executor.submit(UnitJob(unit, str(REPO_ROOT), str(sweep.folder))) for unit in chunk
            ]
        sweep.jobs += [job.job_id for job in jobs]
        sweep.save()


def submit_local(sweep: Sweep, options: dict) -> None:
    import submitit

    from experiments.sweep_jobs import PoolWorker

    gpus = options["gpus"]
    threads = None if gpus else max(1, (os.cpu_count() or 1) // options["workers"])
    for index in range(options["workers"]):
        device = gpus[index % len(gpus)] if gpus else ""
        executor = submitit.LocalExecutor(folder=sweep.folder / "jobs")
        # submitit's own GPU setting stays 0: each worker gives its runs exactly one GPU.
        executor.update_parameters(timeout_min=60 * 24 * 365, gpus_per_node=0)
        worker = PoolWorker(
            sweep.units, str(REPO_ROOT), str(sweep.folder), device, threads, options["poll"]
        )
        job = executor.submit(worker)
        pid = int(job.job_id)
        sweep.workers.append(
            {
                "pid": pid,
                "start": process_start(pid),
                "host": socket.gethostname(),
                "device": device,
            }
        )
        sweep.save()


# ----------------------------------------------------------------------------------------------
# Commands


def wait(sweep: Sweep, poll: float) -> int:
    """A progress bar until no job of the sweep is left; then the failures. Returns 0 if all
    runs finished."""
    from tqdm import tqdm

    total = sum(len(unit) for unit in sweep.units)
    bar = tqdm(total=total, desc=f"sweep {sweep.protocol}", unit="run", file=sys.stderr)
    try:
        while True:
            statuses = run_states([sweep])
            counts = Counter(status.state for status in statuses)
            bar.n = counts["done"] + counts["failed"]
            bar.set_postfix(
                done=counts["done"], running=counts["running"], queued=counts["queued"],
                failed=counts["failed"], refresh=False,
            )  # fmt: skip
            bar.refresh()
            if not counts["running"] and not counts["queued"]:
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        bar.close()
        print(
            f"\nstopped waiting; see python tools/sweep.py status {Path(sweep.folder).parents[1]}",
            file=sys.stderr,
        )
        return 130
    bar.close()
    return report(statuses)


def report(statuses: Sequence[RunStatus]) -> int:
    counts = Counter(status.state for status in statuses)
    failed = [status for status in statuses if status.state == "failed"]
    for status in failed:
        print(describe_failure(status))
    summary = ", ".join(f"{counts[state]} {state}" for state in STATES if counts[state])
    print(f"{summary} (of {len(statuses)} runs)")
    if counts["new"] or failed:
        print("submit the same sweep again to run what is left: finished runs are skipped, "
              "unfinished ones resume.")  # fmt: skip
    return 0 if counts["done"] == len(statuses) else 1


def submit(args: argparse.Namespace) -> int:
    protocol = args.command
    environ = dict(os.environ)
    settings = sweep_settings(args, environ)
    methods = sweep_methods(protocol, args.trainers)
    datasets = sweep_datasets(protocol, args.datasets)
    shots = integers("--shots", args.shots, 1)
    for flag, value, protocols_of_flag in (
        ("--subs", args.subs, ("base2new", "zeroshot")),
        ("--shots", args.shots, ("fewshot", "base2new", "xd")),
        ("--seeds", args.seeds, ("fewshot", "base2new", "xd")),
    ):
        if value and protocol not in protocols_of_flag:
            raise SweepError(f"{flag} is for {', '.join(protocols_of_flag)}, not {protocol}.")
    cluster = choose_cluster(args.cluster)
    options = executor_options(args, cluster)
    try:
        import submitit  # noqa: F401
    except ImportError as error:
        raise SweepError("submitit is not installed; pip install -r requirements.txt") from error
    units, notes = plan_sweep(protocol, methods, datasets, shots, settings)
    for message in notes:
        print(message, file=sys.stderr)

    runs = [run for unit in units for run in unit]
    statuses = {s.run.run_dir: s for s in run_states([], runs)}
    planned_checkpoints = {run.run_dir for run in runs if run.training}
    for run in runs:
        needed = run.checkpoint
        if needed and run.model_dir not in planned_checkpoints and not Path(needed).is_file():
            raise SweepError(f"{run.run_dir} evaluates {needed}, which no run of this sweep "
                             f"trains; train it first ({run.train_hint}).")  # fmt: skip
    labels = {"done": "finished", "running": "running", "failed": "unfinished", "new": "new"}
    to_submit = []
    busy = 0
    for unit in units:
        states = [statuses[run.run_dir].state for run in unit]
        if "running" in states:
            busy += 1
        elif any(state != "done" for state in states):
            to_submit.append(unit)
    counts = Counter(labels[statuses[run.run_dir].state] for run in runs)
    summary = ", ".join(f"{counts[k]} {k}" for k in ("finished", "running", "unfinished", "new"))
    print(f"sweep {protocol}: {len(runs)} runs ({summary}) in {len(units)} unit(s)")
    if busy:
        print(f"{busy} unit(s) are being run by other jobs and are left to them.")

    if settings.dry_run:
        for run in runs:
            state = labels[statuses[run.run_dir].state]
            print(f"  {state:<10} {run.kind:<5} {run.run_dir}")
        if to_submit:
            print(f"would submit {sum(len(u) for u in to_submit)} runs in {len(to_submit)} "
                  f"unit(s) to {describe_executor(cluster, options, len(to_submit))}")  # fmt: skip
        else:
            print("would submit nothing")
        return 0
    if not to_submit:
        print("nothing to submit: every run is finished or being run.")
        return 0

    output = Path(settings.output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = output / SWEEPS / f"{stamp}-{protocol}-{os.getpid()}"
    folder.mkdir(parents=True)
    sweep = Sweep(folder, protocol, cluster, to_submit, created=time.time())
    sweep.save()
    os.chdir(REPO_ROOT)  # the jobs import experiments.* and run train.py from here
    (submit_slurm if cluster == "slurm" else submit_local)(sweep, options)
    print(f"submitted {sum(len(u) for u in to_submit)} runs in {len(to_submit)} unit(s) to "
          f"{describe_executor(cluster, options, len(to_submit))}")  # fmt: skip
    if cluster == "slurm":
        print(f"jobs: {', '.join(sorted({job.split('_')[0] for job in sweep.jobs}))}")
    else:
        print(f"workers (pids): {', '.join(str(w['pid']) for w in sweep.workers)}")
    print(f"record: {folder}\nprogress: python tools/sweep.py status {output}")
    return wait(sweep, args.poll) if args.wait else 0


def status(args: argparse.Namespace) -> int:
    output = Path(args.output or os.environ.get("OUTPUT") or "output").resolve()
    if not output.is_dir():
        raise SweepError(f"{output} is not a directory; pass the OUTPUT the sweeps wrote to.")
    sweeps = load_sweeps(output)
    statuses = run_states(sweeps, runs_on_disk(output))
    if not statuses:
        print(f"no runs under {output}")
        return 0
    print(status_table(statuses))
    for status in statuses:
        if status.state == "failed":
            print(describe_failure(status))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for protocol in protocols.PROTOCOLS:
        sub = commands.add_parser(protocol, help=f"submit the {protocol} protocol")
        methods = ", ".join(protocols.methods_with(protocol))
        sub.add_argument("--trainers", nargs="+", metavar="METHOD", help=f"of: {methods}")
        sub.add_argument("--datasets", nargs="+", metavar="DATASET", help="names, or all")
        sub.add_argument("--cfg", help="config name (default: each method's for the protocol)")
        sub.add_argument("--shots", nargs="+", metavar="K", help="shots per class")
        sub.add_argument("--seeds", nargs="+", metavar="S", help="seeds (default SEEDS or 1 2 3)")
        sub.add_argument("--subs", nargs="+", metavar="SUB", help="class halves to evaluate")
        sub.add_argument("--cluster", choices=("auto", "slurm", "local"), default="auto")
        sub.add_argument("--dry-run", action="store_true", help="list the runs, submit nothing")
        sub.add_argument("--wait", action="store_true", help="progress bar until all finish")
        sub.add_argument("--poll", type=positive_float, default=30.0, help="seconds between checks")
        slurm = sub.add_argument_group("Slurm (defaults: one ProGrad run on one GPU)")
        slurm.add_argument("--partition")
        slurm.add_argument("--gpus", type=non_negative_int, help="GPUs per task (1)")
        slurm.add_argument("--cpus", type=positive_int, help="CPUs per task (8)")
        slurm.add_argument("--mem", help="memory per task (32G)")
        slurm.add_argument("--time", help="time limit per task (12:00:00); requeued past it")
        slurm.add_argument("--account")
        slurm.add_argument("--qos")
        slurm.add_argument("--parallel", type=positive_int, help="tasks running at once (64)")
        local = sub.add_argument_group("local")
        local.add_argument(
            "--workers", type=positive_int, help="concurrent runs (one per visible GPU)"
        )
    sub = commands.add_parser("status", help="done / running / queued / failed per cell")
    sub.add_argument("output", nargs="?", help="the OUTPUT folder (default $OUTPUT or output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return status(args) if args.command == "status" else submit(args)
    except (SweepError, ProtocolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
