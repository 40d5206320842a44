#!/usr/bin/env bash
# Transfer for KgCoOp: evaluate the xd_train.sh models (--eval-only) on DATASET:
# imagenetv2, imagenet_sketch, imagenet_a, imagenet_r (domain generalisation) or any other
# dataset but imagenet (cross-dataset transfer).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kgcoop/xd_test.sh DATASET
#   DATA=/path/to/datasets bash scripts/kgcoop/xd_test.sh all   # every target and seed, one process
# Env: the same as xd_train.sh (they locate the model), plus LOADEP = the training epochs (100)
# Output: $OUTPUT/evaluation/KgCoOp/vit_b16_ep100_ctxv1_4shots/nctx4_cscFalse_ctpend/DATASET/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 imagenetv2"
run_xd_test KgCoOp "$@"
