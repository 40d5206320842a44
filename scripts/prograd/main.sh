#!/usr/bin/env bash
# Few-shot protocol for ProGrad: train on DATASET with SHOTS images per class, one run per seed.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/prograd/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/prograd/main.sh caltech101 rn50 16
# Env (defaults): SEEDS "1 2 3", NCTX 16, CSC False, CTP end, OUTPUT output, DRY_RUN 0,
#   EPOCHS  by shots: 1 -> 50, 2-4 -> 100, 8-16 -> 200; imagenet always 50
#   LAMBDA  0.8 at 8/16 shots on oxford_flowers, dtd, eurosat; 1.0 otherwise (ProGrad README)
# Output: $OUTPUT/DATASET/ProGrad/CFG_SHOTSshots/nctx16_cscFalse_ctpend/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 rn50 16"
run_fewshot ProGrad "$@"
