#!/usr/bin/env bash
# Transfer source for linear-probe CLIP: fit on 16-shot ImageNet (as CoOp's domain
# generalisation table), C searched on images held out from ImageNet's train split, one run per
# seed; xd_test.sh evaluates it on the ImageNet variants.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/linearprobeclip/xd_train.sh
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG rn50, OUTPUT output, DRY_RUN 0
# Output: $OUTPUT/imagenet/LinearProbeCLIP/rn50_16shots/default/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 0 $# "bash $0 (no arguments; set SHOTS/CFG in the environment)"
run_xd_train LinearProbeCLIP
