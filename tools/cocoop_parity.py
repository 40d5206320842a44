"""Our CoCoOp against the CoOp repository's, step for step on identical input:
``COOP_REPO=/path/to/CoOp python tools/cocoop_parity.py --arch ViT --steps 8``.
The code is devkit/cocoop_parity.py."""

import _root  # noqa: F401  (the repository root on sys.path)

from devkit.cocoop_parity import main

if __name__ == "__main__":
    main()
