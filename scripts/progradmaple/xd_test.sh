#!/usr/bin/env bash
# Transfer for ProGradMaPLe: evaluate the xd_train.sh models (--eval-only, epoch 2) on
# DATASET: imagenetv2, imagenet_sketch, imagenet_a, imagenet_r (domain generalisation) or any
# other dataset but imagenet (cross-dataset transfer).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/progradmaple/xd_test.sh DATASET
#   for d in imagenetv2 imagenet_sketch imagenet_a imagenet_r; do
#       bash scripts/progradmaple/xd_test.sh "$d"; done
# Env: the same as xd_train.sh (they locate the model), plus LOADEP = the training epochs (2)
# Output: $OUTPUT/evaluation/ProGradMaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/nctx2/DATASET/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 imagenetv2"
run_xd_test ProGradMaPLe "$@"
