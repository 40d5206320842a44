#!/usr/bin/env bash
# Base-to-new generalisation for CoCoOp, step 1: train on the base half
# of DATASET's classes. CoCoOp's paper protocol (the CoOp repository's scripts/cocoop/): CFG
# vit_b16_c4_ep10_batch1_ctxv1 (ViT-B/16, context "a photo of a"), 16 shots, 10 epochs, batch 1.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/cocoop/base2new_train.sh DATASET
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG vit_b16_c4_ep10_batch1_ctxv1, EPOCHS 10, NCTX 4,
#   OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
#   (CoCoOp has no λ)
# Output: $OUTPUT/base2new/train_base/DATASET/shots_16/CoCoOp/
#   vit_b16_c4_ep10_batch1_ctxv1/seedS
# Then: bash scripts/cocoop/base2new_test.sh DATASET

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 caltech101"
run_base2new_train CoCoOp "$@"
