"""The run scripts as the script tests run them: ``bash scripts/<script>`` in a copy of the
repository, with DRY_RUN=1 and DATA set unless told otherwise, the commands a dry run prints, and a
placeholder train.py for real (non-dry) runs."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

# Stands in for train.py in real (non-dry) runs: records its arguments, writes a complete log.
FAKE_TRAIN_PY = """import sys
from pathlib import Path

args = sys.argv[1:]
with open("calls.txt", "a") as calls:
    calls.write(" ".join(args) + "\\n")
output = Path(args[args.index("--output-dir") + 1])
output.mkdir(parents=True, exist_ok=True)
(output / "log.txt").write_text({log!r})
"""


def run_script(
    repo: Path, script: str, *args: str, **env: str | None
) -> subprocess.CompletedProcess:
    """Runs ``bash scripts/<script> args`` from the repo root with DRY_RUN=1 and DATA set.

    Keyword arguments set environment variables; None removes one.
    """
    environment = {"PATH": os.environ["PATH"], "DRY_RUN": "1", "DATA": "/datasets"}
    environment.update(env)
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run(
        ["bash", f"scripts/{script}", *args],
        cwd=repo,
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )


def commands(repo: Path, script: str, *args: str, **env: str | None) -> list[list[str]]:
    """The train.py command lines a dry run prints, each split into its arguments."""
    completed = run_script(repo, script, *args, **env)
    assert completed.returncode == 0, completed.stderr
    return [shlex.split(line) for line in completed.stdout.splitlines()]


def option(command: list[str], name: str) -> str:
    """The value following ``name`` (a --flag or a config key) in a command."""
    return command[command.index(name) + 1]
