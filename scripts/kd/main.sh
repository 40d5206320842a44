#!/usr/bin/env bash
# Few-shot protocol for KD: train on DATASET with SHOTS images per class, one run per seed.
# The paper's distillation baseline, CoOp + KD: the KD trainer (trainers/kd.py, --trainer KD;
# the official configs' --trainer ProGrad LOSS.NAME kd builds it too),
# (1 - α) CE + α T² KL(zero-shot || student) with LOSS.ALPHA 0.5 and LOSS.T 1.0 by default
# (another α: EXTRA_OPTS="LOSS.ALPHA 0.3" with its own OUTPUT); ProGrad's configs (context from
# the dataset's template) and CoOp's protocol defaults; no projection, so no λ.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kd/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/kd/main.sh caltech101 rn50 16
# Env (defaults): SEEDS "1 2 3", NCTX 16, CSC False, CTP end, OUTPUT output, DRY_RUN 0,
#   EPOCHS  by shots: 1 -> 50, 2-4 -> 100, 8-16 -> 200; imagenet always 50
# Output: $OUTPUT/DATASET/KD/CFG_SHOTSshots/nctx16_cscFalse_ctpend/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 rn50 16"
run_fewshot KD "$@"
