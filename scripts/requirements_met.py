"""Exit 0 when every requirement of a requirements file is installed in this Python; otherwise
print the missing ones, one a line, and exit 1. scripts/install.sh skips pip when nothing is
missing, so that `make test` is quick the second time.

    python scripts/requirements_met.py requirements.txt
"""

from __future__ import annotations

import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh venv has no packaging, but pip carries a copy
    from pip._vendor.packaging.requirements import Requirement


def missing_requirements(path: str) -> list[str]:
    """The lines of a requirements file that this Python does not satisfy."""
    missing = []
    with open(path) as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("-"):  # options and nested files: let pip decide
                missing.append(line)
                continue
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            try:
                version = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                missing.append(line)
                continue
            if not requirement.specifier.contains(version, prereleases=True):
                missing.append(f"{line} (found {version})")
    return missing


if __name__ == "__main__":
    lines = missing_requirements(sys.argv[1] if len(sys.argv) > 1 else "requirements.txt")
    print("\n".join(lines))
    sys.exit(1 if lines else 0)
