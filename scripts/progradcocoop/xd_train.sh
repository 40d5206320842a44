#!/usr/bin/env bash
# Transfer source for ProGradCoCoOp: train on ImageNet (all classes), one run per
# seed; it serves domain generalisation and cross-dataset transfer (xd_test.sh). CoCoOp's
# settings (the CoOp repository's scripts/cocoop/xd_train.sh): 16 shots, CFG
# vit_b16_c4_ep10_batch1_ctxv1, 10 epochs, batch 1.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/progradcocoop/xd_train.sh
# Env (defaults): SEEDS "1 2 3", SHOTS 16, CFG vit_b16_c4_ep10_batch1_ctxv1, EPOCHS 10, NCTX 4,
#   OUTPUT output, DRY_RUN 0, EXTRA_OPTS ""
# Output: $OUTPUT/imagenet/ProGradCoCoOp/vit_b16_c4_ep10_batch1_ctxv1_16shots/nctx4/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 0 $# "bash $0 (no arguments; set SHOTS/CFG in the environment)"
run_xd_train ProGradCoCoOp
