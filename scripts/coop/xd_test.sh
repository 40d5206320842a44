#!/usr/bin/env bash
# Transfer for CoOp: evaluate the xd_train.sh models (--eval-only) on DATASET:
# imagenetv2, imagenet_sketch, imagenet_a, imagenet_r (domain generalisation) or any other
# dataset but imagenet (cross-dataset transfer).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/coop/xd_test.sh DATASET
#   for d in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
#       bash scripts/coop/xd_test.sh "$d"; done
#   bash scripts/coop/xd_test.sh all    # every target, every seed, in one process (EVAL_BATCH)
# Env: the same as xd_train.sh (they locate the model), plus LOADEP = the training epochs (50)
# Output: $OUTPUT/evaluation/CoOp/rn50_4shots/nctx16_cscFalse_ctpend/DATASET/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 imagenetv2"
run_xd_test CoOp "$@"
