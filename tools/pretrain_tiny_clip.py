"""Pretrain the demo's tiny CLIP on TinyWorld: ``python tools/pretrain_tiny_clip.py [--help]``.
The code is devkit/pretrain_tiny_clip.py."""

import sys

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.pretrain_tiny_clip import main

if __name__ == "__main__":
    sys.exit(main())
