#!/usr/bin/env bash
# Base-to-new generalisation for KgCoOp, step 1: train on the base half of DATASET's classes.
# Settings of KgCoOp's official base2new_train.sh: 16 shots, CFG vit_b16_ep100_ctxv1 with 100
# epochs, W 8.0, 4 context vectors.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kgcoop/base2new_train.sh DATASET
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG vit_b16_ep100_ctxv1, EPOCHS 100, NCTX 4,
#   CSC False, CTP end, OUTPUT output, DRY_RUN 0
# Output: $OUTPUT/base2new/train_base/DATASET/shots_16/KgCoOp/vit_b16_ep100_ctxv1/seedS
# Then: bash scripts/kgcoop/base2new_test.sh DATASET

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 caltech101"
run_base2new_train KgCoOp "$@"
