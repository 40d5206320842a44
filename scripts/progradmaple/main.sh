#!/usr/bin/env bash
# Few-shot protocol for ProGradMaPLe: train on DATASET with SHOTS images per class, one run per
# seed. MaPLe's own settings at every shot count: 5 epochs, batch 4 (its configs).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/progradmaple/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/progradmaple/main.sh caltech101 vit_b16_c2_ep5_batch4_2ctx 16
# Env (defaults): SEEDS "1 2 3", NCTX 2, OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
#   EPOCHS  5 (ImageNet: 2)
#   LAMBDA  0.8 at 8/16 shots on oxford_flowers, dtd, eurosat; 1.0 otherwise (ProGrad's rule)
# Output: $OUTPUT/DATASET/ProGradMaPLe/CFG_SHOTSshots/nctx2/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# \
    "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 vit_b16_c2_ep5_batch4_2ctx 16"
run_fewshot ProGradMaPLe "$@"
