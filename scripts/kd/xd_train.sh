#!/usr/bin/env bash
# Transfer source for KD: train on ImageNet (all classes), one run per seed. The same run serves
# domain generalisation and cross-dataset transfer (xd_test.sh) and is the ImageNet row of the
# few-shot table. Settings of ProGrad's official eval.sh: 4 shots, CFG rn50, 50 epochs.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kd/xd_train.sh
# Env (defaults): SEEDS "1 2 3", SHOTS 4, CFG rn50, EPOCHS 50, NCTX 16, CSC False, CTP end,
#   OUTPUT output, DRY_RUN 0
# Output: $OUTPUT/imagenet/KD/rn50_4shots/nctx16_cscFalse_ctpend/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 0 $# "bash $0 (no arguments; set SHOTS/CFG in the environment)"
run_xd_train KD
