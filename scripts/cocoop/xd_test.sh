#!/usr/bin/env bash
# Transfer for CoCoOp: evaluate the xd_train.sh models (--eval-only, epoch 10) on
# DATASET: imagenetv2, imagenet_sketch, imagenet_a, imagenet_r (domain generalisation) or any
# other dataset but imagenet (cross-dataset transfer).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/cocoop/xd_test.sh DATASET
#   for d in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
#       bash scripts/cocoop/xd_test.sh "$d"; done
#   bash scripts/cocoop/xd_test.sh all    # every target, every seed, in one process (EVAL_BATCH)
# Env: the same as xd_train.sh (they locate the model), plus LOADEP = the training epochs (10)
# Output: $OUTPUT/evaluation/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/nctx4/DATASET/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 imagenetv2"
run_xd_test CoCoOp "$@"
