#!/usr/bin/env bash
# Few-shot protocol for linear-probe CLIP (CoOp's lpclip/): logistic regression on frozen image
# features of SHOTS images per class of DATASET, C searched on the few-shot validation split
# (imagenet: on images held out from its train split, TRAINER.LINEAR_PROBE.VALIDATION train), one
# run per seed. Features come from the feature cache (docs/methods.md: Linear-probe CLIP), so
# each split is encoded once per backbone file, whatever the shots and seeds.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/linearprobeclip/main.sh DATASET CFG SHOTS
#   e.g. bash scripts/linearprobeclip/main.sh caltech101 rn50 16
# Env (defaults): SEEDS "1 2 3", OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
#   (no prompt, no epochs, no λ)
# Output: $OUTPUT/DATASET/LinearProbeCLIP/CFG_SHOTSshots/default/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 3 $# "bash $0 DATASET CFG SHOTS, e.g. bash $0 caltech101 rn50 16"
run_fewshot LinearProbeCLIP "$@"
