"""Our ProGrad and CoOp against the official ProGrad code, whole train.py runs:
``python tools/prograd_parity.py --official /path/to/Prompt-align --method ProGrad --epochs 2``.
The code is devkit/prograd_parity.py."""

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.prograd_parity import main

if __name__ == "__main__":
    main()
