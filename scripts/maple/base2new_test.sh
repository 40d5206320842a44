#!/usr/bin/env bash
# Base-to-new generalisation for MaPLe, step 2: evaluate the
# base2new_train.sh models on the base and the new classes of DATASET (--eval-only, epoch 5).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/maple/base2new_test.sh DATASET
# Env: the same as base2new_train.sh (they locate the model), plus
#   SUBS "base new" (which class halves to evaluate), LOADEP = the training epochs (5)
# Output: $OUTPUT/base2new/test_{base,new}/DATASET/shots_16/MaPLe/
#   vit_b16_c2_ep5_batch4_2ctx/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 caltech101"
run_base2new_test MaPLe "$@"
