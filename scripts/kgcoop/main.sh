#!/usr/bin/env bash
# Few-shot protocol for KgCoOp: train on DATASET with SHOTS images per class, one run per seed.
# KgCoOp's official settings (its scripts have no few-shot run): W 8.0, 4 context vectors from
# "a photo of a" (CTX_INIT True), 100 epochs at every shot count; CFG rn50_ep100 puts it in the
# RN50 comparison with CoOp and ProGrad.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kgcoop/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/kgcoop/main.sh caltech101 rn50_ep100 16
# Env (defaults): SEEDS "1 2 3", NCTX 4, CSC False, CTP end, OUTPUT output, DRY_RUN 0,
#   EPOCHS 100, EXTRA_OPTS ""   (KgCoOp has no λ)
# Output: $OUTPUT/DATASET/KgCoOp/CFG_SHOTSshots/nctx4_cscFalse_ctpend/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 rn50_ep100 16"
run_fewshot KgCoOp "$@"
