#!/usr/bin/env bash
# Base-to-new generalisation for ProGradMaPLe, step 1: train on the base half
# of DATASET's classes. MaPLe's paper protocol (its official scripts/maple/): CFG
# vit_b16_c2_ep5_batch4_2ctx (ViT-B/16, context "a photo of a"), 16 shots, 5 epochs, batch 4.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/progradmaple/base2new_train.sh DATASET
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG vit_b16_c2_ep5_batch4_2ctx, EPOCHS 5, NCTX 2,
#   OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
#   LAMBDA  1.0
# Output: $OUTPUT/base2new/train_base/DATASET/shots_16/ProGradMaPLe/
#   vit_b16_c2_ep5_batch4_2ctx/seedS
# Then: bash scripts/progradmaple/base2new_test.sh DATASET

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 caltech101"
run_base2new_train ProGradMaPLe "$@"
