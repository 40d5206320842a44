#!/usr/bin/env bash
# Domain generalisation for linear-probe CLIP: evaluate the xd_train.sh probes (--eval-only,
# linear_probe/model.pth.tar-1) on DATASET, one of imagenetv2, imagenet_sketch, imagenet_a,
# imagenet_r (their classes are ImageNet's; the probe's rows are picked by class name). Other
# datasets have other classes, which a linear probe cannot classify: they are refused.
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/linearprobeclip/xd_test.sh DATASET
#   DATA=/path/to/datasets bash scripts/linearprobeclip/xd_test.sh all   # every target and seed, one process
# Env: the same as xd_train.sh (they locate the probe)
# Output: $OUTPUT/evaluation/LinearProbeCLIP/rn50_16shots/default/DATASET/seedS

# Shared protocol logic and the settings it reads: scripts/common.sh
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
usage_unless 1 $# "bash $0 DATASET, e.g. bash $0 imagenetv2"
run_xd_test LinearProbeCLIP "$@"
