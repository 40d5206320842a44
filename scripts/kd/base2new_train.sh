#!/usr/bin/env bash
# Base-to-new generalisation for KD, step 1: train on the base half of DATASET's classes.
# The paper's distillation baseline, CoOp + KD: the KD trainer (trainers/kd.py, --trainer KD;
# the official configs' --trainer ProGrad LOSS.NAME kd builds it too),
# (1 - α) CE + α T² KL(zero-shot || student) with LOSS.ALPHA 0.5 and LOSS.T 1.0 by default
# (another α: EXTRA_OPTS="LOSS.ALPHA 0.3" with its own OUTPUT); ProGrad's configs (context from
# the dataset's template) and CoOp's protocol defaults; no projection, so no λ.
# Settings of ProGrad's official base2new scripts: 4 shots, CFG rn50_ep100 with 100 epochs
# (imagenet: rn50_ep50 with 50 epochs).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kd/base2new_train.sh DATASET
# Env (defaults): SEEDS "1 2 3", SHOTS 4, CFG rn50_ep100, EPOCHS 100, NCTX 16, CSC False,
#   CTP end, OUTPUT output, DRY_RUN 0
# Output: $OUTPUT/base2new/train_base/DATASET/shots_4/KD/rn50_ep100/seedS
# Then: bash scripts/kd/base2new_test.sh DATASET

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 caltech101"
run_base2new_train KD "$@"
