#!/usr/bin/env bash
# Transfer source for KgCoOp: train on ImageNet (all classes), one run per seed. The same run
# serves domain generalisation and cross-dataset transfer (xd_test.sh). Settings of KgCoOp's
# official xd_train.sh: 4 shots, CFG vit_b16_ep100_ctxv1, 100 epochs, W 8.0.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/kgcoop/xd_train.sh
# Env (defaults): SEEDS "1 2 3", SHOTS 4, CFG vit_b16_ep100_ctxv1, EPOCHS 100, NCTX 4,
#   CSC False, CTP end, OUTPUT output, DRY_RUN 0
# Output: $OUTPUT/imagenet/KgCoOp/vit_b16_ep100_ctxv1_4shots/nctx4_cscFalse_ctpend/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 0 $# "bash $0 (no arguments; set SHOTS/CFG in the environment)"
run_xd_train KgCoOp
