"""Our KgCoOp against the official code on identical input:
``python tools/kgcoop_parity.py --official /path/to/KgCoOp-checkout/KgCoOp [--steps 5]``.
The code is devkit/kgcoop_parity.py."""

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.kgcoop_parity import main

if __name__ == "__main__":
    main()
