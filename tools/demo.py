"""The paper in miniature, on a CPU in minutes: ``python tools/demo.py [--help]`` (``make demo``).
The code is devkit/demo.py."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.demo import main

if __name__ == "__main__":
    sys.exit(main())
