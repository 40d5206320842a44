"""Train or evaluate any registered trainer (ProGrad, CoOp, ZeroshotCLIP, KgCoOp, KD, CoCoOp,
ProGradCoCoOp, LinearProbeCLIP, and those of PROGRAD_PLUGINS) with CoOp's command line.

    python train.py --root DATA --seed 1 --trainer ProGrad \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/ProGrad/rn50.yaml \
        --output-dir output/caltech101/ProGrad/rn50_16shots/seed1 DATASET.NUM_SHOTS 16
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import torch

# Dassl imports wilds, whose `outdated` dependency asks PyPI for new versions at import time.
os.environ.setdefault("OUTDATED_IGNORE", "1")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

from dassl.config import get_cfg_default  # noqa: E402
from dassl.data.datasets import DATASET_REGISTRY  # noqa: E402
from dassl.engine import TRAINER_REGISTRY, build_trainer  # noqa: E402
from dassl.utils import collect_env_info, set_random_seed, setup_logger  # noqa: E402
from yacs.config import CfgNode as CN  # noqa: E402

import datasets  # noqa: E402,F401  (registers the datasets)
from experiments import catalog  # noqa: E402
from experiments.atomic import FULL_DISK, translate, write_text  # noqa: E402
from experiments.locks import RunLock  # noqa: E402
from experiments.run_record import method_name, recorded_run  # noqa: E402
from trainers import config  # noqa: E402
from trainers.inputs import (  # noqa: E402
    check_paths,
    check_values,
    error_text,
    merge_config_file,
    merge_options,
)


def extend_cfg(cfg: CN) -> None:
    """Add the keys every method declares (and the common ones) to Dassl's default config."""
    config.extend_cfg(cfg, catalog.methods().values())


def reset_cfg(cfg: CN, args: argparse.Namespace) -> None:
    """Command-line arguments override the config files."""
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    # --seed 0 seeds too (CoOp's `if args.seed:` dropped it).
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args: argparse.Namespace) -> CN:
    """Dassl's defaults + our keys, then the dataset file, the method file, flags and opts.

    Every key and value of the files and options is checked against the declared tree
    (trainers/inputs.py): a typo, a missing value or a wrong type is a clear error; then every
    key's value against its declared range or choices (trainers/config.py key_values).
    """
    # Every module that declares a method (trainers/*.py, PROGRAD_PLUGINS) registers its trainer.
    catalog.import_all()
    cfg = get_cfg_default()
    extend_cfg(cfg)
    declared = cfg.clone()
    sources: dict[str, str] = {}  # key -> where it was set, for check_values' messages
    for flag, path in (
        ("--dataset-config-file", args.dataset_config_file),
        ("--config-file", args.config_file),
    ):
        if path and not os.path.exists(path):
            raise FileNotFoundError(
                f"{flag} {path} does not exist; run from the repository root and pick a file "
                f"from configs/ (e.g. configs/datasets/caltech101.yaml, "
                f"configs/trainers/ProGrad/rn50.yaml)"
            )
        if path:
            merge_config_file(cfg, declared, path, flag, sources)
    reset_cfg(cfg, args)
    given = {
        flag: key for flag, key in FLAG_KEYS.items() if getattr(args, flag) not in (None, "", -1)
    }
    sources.update({key: f"from --{flag.replace('_', '-')}" for flag, key in given.items()})
    merge_options(cfg, declared, args.opts, sources)
    check_values(cfg, declared, config.key_values(catalog.methods().values()), sources)
    cfg.freeze()
    return cfg


# The flags that set a config key (reset_cfg), by argparse destination.
FLAG_KEYS = {
    "root": "DATASET.ROOT",
    "output_dir": "OUTPUT_DIR",
    "resume": "RESUME",
    "seed": "SEED",
    "source_domains": "DATASET.SOURCE_DOMAINS",
    "target_domains": "DATASET.TARGET_DOMAINS",
    "transforms": "INPUT.TRANSFORMS",
    "trainer": "TRAINER.NAME",
    "backbone": "MODEL.BACKBONE.NAME",
    "head": "MODEL.HEAD.NAME",
}


def project_trainers() -> list[str]:
    """The trainers this project's methods run (their declarations), as opposed to Dassl's own."""
    return sorted({method.trainer for method in catalog.methods().values()})


def check_names(cfg: CN) -> None:
    """Trainer and dataset must be registered; say which are, before anything is written."""
    trainers_here = TRAINER_REGISTRY.registered_names()
    if cfg.TRAINER.NAME not in trainers_here:
        ours = project_trainers()
        dassls = sorted(set(trainers_here) - set(ours))
        raise ValueError(
            f'--trainer "{cfg.TRAINER.NAME}" is not a registered trainer; use one of this '
            f"project's: {', '.join(ours)}, or of Dassl's: {', '.join(dassls)}"
        )
    datasets_here = DATASET_REGISTRY.registered_names()
    if cfg.DATASET.NAME not in datasets_here:
        raise ValueError(
            f'DATASET.NAME "{cfg.DATASET.NAME}" is not a registered dataset; pass one of the '
            f"files in configs/datasets/ with --dataset-config-file (registered: "
            f"{', '.join(sorted(datasets_here))})"
        )


def write_config(cfg: CN) -> None:
    """Keep the run's full config beside its log (tools read the backbone from it)."""
    path = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    if not os.path.exists(path):  # a resumed or repeated run keeps the first one
        write_text(path, cfg.dump(), "the run's config")


def seed_and_build(cfg: CN):
    """Seed every RNG from cfg.SEED (when >= 0) and build the Dassl trainer."""
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    return build_trainer(cfg)


class RunBusyError(ValueError):
    """Another live process holds the run directory's lock."""


def take_run_lock(output_dir: str) -> RunLock:
    """The lock of the run directory (experiments/locks.py), or the error naming its holder.

    A script or sweep that holds the lock and started us passes its token down: we go on under
    its lock. Nothing is written to a run that another live process holds.
    """
    lock = RunLock(output_dir)
    if not lock.acquire_or_inherit():
        raise RunBusyError(lock.refusal(f"--output-dir {output_dir}"))
    return lock


def main(args: argparse.Namespace) -> None:
    cfg = setup_cfg(args)
    check_names(cfg)
    check_paths(cfg, args.model_dir if args.eval_only else "")
    lock = take_run_lock(cfg.OUTPUT_DIR)
    try:
        run_locked(cfg, args)
    finally:
        lock.release()


def run_locked(cfg: CN, args: argparse.Namespace) -> None:
    """Everything that writes the run directory, under its lock."""
    setup_logger(cfg.OUTPUT_DIR)
    write_config(cfg)
    print("** Arguments **")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("** Config **")
    print(cfg)
    if args.env_info:
        print(f"** System info **\n{collect_env_info()}\n")

    # run.json: "running" now, then "finished" with the final test's accuracy, or "failed".
    method = method_name(cfg.TRAINER.NAME, cfg)
    with recorded_run(cfg, args, method) as run:
        trainer = run.watch(seed_and_build(cfg))
        if args.eval_only:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
            trainer.test()
            return
        if not args.no_train:
            trainer.train()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume", type=str, default="", help="checkpoint directory to resume training from"
    )
    parser.add_argument(
        "--seed", type=int, default=-1, help="a value >= 0 (0 included) fixes the seed"
    )
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument(
        "--dataset-config-file", type=str, default="", help="path to config file for dataset setup"
    )
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir", type=str, default="", help="load model from this directory (eval-only)"
    )
    parser.add_argument(
        "--load-epoch", type=int, help="load model weights at this epoch for evaluation"
    )
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "--env-info", action="store_true", help="print torch's environment report (slow)"
    )
    parser.add_argument(
        "opts", default=None, nargs=argparse.REMAINDER, help="config options: KEY VALUE ..."
    )
    return parser


def run(argv: list[str] | None = None) -> None:
    """train.py's command line: bad input ends in one `error: ...` paragraph, no traceback."""
    args = build_parser().parse_args(argv)
    try:
        main(args)
    except (ValueError, OSError) as error:  # OSError: FileNotFoundError, PermissionError, ...
        if os.environ.get("PROGRAD_TRACEBACK"):
            raise
        if isinstance(error, OSError) and error.errno in FULL_DISK:
            # Also met outside experiments/atomic.py (Dassl's log.txt, tensorboard): the log
            # file cannot take more either, so stop writing to it.
            stop_logging_to_file()
            where = error.filename or args.output_dir or "the run's folder"
            error = translate(error, where, "the run's log and tensorboard files")
        hint = "(set PROGRAD_TRACEBACK=1 to see where it was raised)"
        sys.exit(f"error: {error_text(error)}\n{hint}")


def stop_logging_to_file() -> None:
    """Detach Dassl's tee of stdout into log.txt (its buffered tail cannot be written)."""
    log = sys.stdout
    file = getattr(log, "file", None)
    if file is None or not hasattr(log, "console"):
        return
    log.file = None
    try:
        file.close()
    except OSError:
        pass


if __name__ == "__main__":
    run()
