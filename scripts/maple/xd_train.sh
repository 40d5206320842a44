#!/usr/bin/env bash
# Transfer source for MaPLe: train on ImageNet (all classes), one run per
# seed; it serves domain generalisation and cross-dataset transfer (xd_test.sh). MaPLe's
# settings (its official scripts/maple/xd_train_maple.sh): 16 shots, CFG
# vit_b16_c2_ep5_batch4_2ctx_cross_datasets, 2 epochs, batch 4.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/maple/xd_train.sh
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG vit_b16_c2_ep5_batch4_2ctx_cross_datasets, EPOCHS 2, NCTX 2,
#   OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
# Output: $OUTPUT/imagenet/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/nctx2/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 0 $# "bash $0 (no arguments; set SHOTS/CFG in the environment)"
run_xd_train MaPLe
