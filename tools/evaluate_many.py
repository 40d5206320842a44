"""Run several train.py evaluations in one process: CLIP loaded once, each split read once.

Usage (from the repository root; what experiments/protocols.py runs for a plan's evaluations):
    python tools/evaluate_many.py < commands.json

commands.json is a JSON list of train.py argument lists (each without ``python train.py``),
each an evaluation (``--eval-only``). Every run goes through train.py's own ``main``, so its
directory gets the log.txt, config.yaml and run.json a separate ``python train.py ...`` would
write; what the runs share is the process: CLIP is loaded once per backbone and weight dtype
(``trainers.base.shared_clip_models``) and each split's image features are read from the feature
cache once (``trainers.eval_features.features_in_memory``). A run that fails is reported (and
its run.json says so) and the others go on; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

import _root  # noqa: F401  (the repository root on sys.path)

import train  # noqa: E402  (its module-level setup: warnings, OUTDATED_IGNORE)
from trainers.base import shared_clip_models  # noqa: E402
from trainers.eval_features import features_in_memory  # noqa: E402
from trainers.inputs import error_text  # noqa: E402


class _Closed:
    """Stands in for the console of a finished run's Dassl Logger, which closes its console
    when it is closed or collected (dassl.utils.logger.Logger.close): the real one stays open."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_one(argv: list[str]) -> str | None:
    """One train.py run in this process; returns its error text, or None when it succeeded."""
    console = sys.stdout
    try:
        args = train.build_parser().parse_args(argv)
        if not args.eval_only:
            return "not an evaluation (--eval-only); run it with python train.py"
        train.main(args)
        return None
    except (ValueError, OSError) as error:
        return error_text(error)
    except Exception as error:  # noqa: BLE001  (one broken run must not stop the others)
        return f"{type(error).__name__}: {error}"
    finally:
        logger, sys.stdout = sys.stdout, console
        if logger is not console:
            logger.flush()
            if getattr(logger, "file", None) is not None:
                logger.file.close()
                logger.file = None
            logger.console = _Closed()
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="stdin: a JSON list of train.py argument lists, each with --eval-only",
    )
    parser.parse_args(argv)
    try:
        commands = json.load(sys.stdin)
    except ValueError as error:
        print(f"error: the commands on stdin are not JSON ({error})", file=sys.stderr)
        return 2
    if not isinstance(commands, list) or not all(isinstance(argv, list) for argv in commands):
        print(
            "error: the commands on stdin must be a JSON list of train.py argument lists, "
            'e.g. [["--eval-only", "--output-dir", "out", ...]]',
            file=sys.stderr,
        )
        return 2
    failures = []
    with shared_clip_models(), features_in_memory():
        for argv in commands:
            problem = run_one([str(word) for word in argv])
            if problem is not None:
                where = argv[argv.index("--output-dir") + 1] if "--output-dir" in argv else argv
                failures.append(f"error: {where}: {problem}")
                print(failures[-1], file=sys.stderr, flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
