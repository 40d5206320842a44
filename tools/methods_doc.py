"""Regenerate (or, with --check, verify) the reference block of docs/methods.md from the method
declarations: ``python tools/methods_doc.py [--check]``. The code is experiments/methods_doc.py."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from experiments.methods_doc import main

if __name__ == "__main__":
    sys.exit(main())
