"""What is on disk, to assert that a command left every file that existed before unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def snapshot(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``roots`` (links followed): path -> (mode bits, sha1 of the content)."""
    state = {}
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as file:
                    digest = hashlib.sha1(file.read()).hexdigest()
                state[path] = (os.stat(path).st_mode, digest)
    return state


def changed_or_removed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]):
    """The files of ``before`` that are gone or differ in ``after`` (new files are allowed)."""
    return sorted(path for path, state in before.items() if after.get(path) != state)
