"""Our MaPLe against the official code (muzairkhattak/multimodal-prompt-learning), step for step
on identical input:
``MAPLE_OFFICIAL=/path/to/multimodal-prompt-learning python tools/maple_parity.py``.
The code is devkit/maple_parity.py."""

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.maple_parity import main

if __name__ == "__main__":
    main()
