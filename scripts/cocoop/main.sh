#!/usr/bin/env bash
# Few-shot protocol for CoCoOp: train on DATASET with SHOTS images per class, one run per
# seed. CoCoOp's own settings at every shot count: 10 epochs, batch 1 (its configs).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/cocoop/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/cocoop/main.sh caltech101 vit_b16_c4_ep10_batch1_ctxv1 16
# Env (defaults): SEEDS "1 2 3", NCTX 4 (ignored by the *_ctxv1 configs, whose context is the
#   words "a photo of a"), OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
#   EPOCHS  10
#   (CoCoOp has no λ)
# Output: $OUTPUT/DATASET/CoCoOp/CFG_SHOTSshots/nctx4/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# \
    "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 vit_b16_c4_ep10_batch1_ctxv1 16"
run_fewshot CoCoOp "$@"
