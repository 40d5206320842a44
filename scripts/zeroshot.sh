#!/usr/bin/env bash
# Zero-shot CLIP (trainer ZeroshotCLIP, hand-written prompts, --eval-only) on DATASET with the
# backbone of configs/trainers/CoOp/CFG.yaml. Shared by every method's tables: the zero-shot
# line of the few-shot plot, and with SUBS="base new" the zero-shot base-to-new row.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/zeroshot.sh DATASET CFG
#   e.g. bash scripts/zeroshot.sh caltech101 rn50
# Env (defaults): SUBS "all" (any of all, base, new), OUTPUT output, DRY_RUN 0
# Output: all      -> $OUTPUT/ZeroshotCLIP/CFG/DATASET (CoOp's layout)
#         base/new -> $OUTPUT/base2new/test_{base,new}/DATASET/shots_0/ZeroshotCLIP/CFG

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage_unless 2 $# "bash $0 DATASET CFG, e.g. bash $0 caltech101 rn50"
run_zeroshot "$@"
