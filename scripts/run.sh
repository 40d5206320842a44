#!/usr/bin/env bash
# Any declared method through one script, with the same protocols, settings and outputs as its
# own scripts/<method>/<SCRIPT>.sh (a method declared in trainers/ or PROGRAD_PLUGINS needs no
# script files of its own).
#
# Usage (from the repository root):
#   DATA=/path/to/datasets bash scripts/run.sh METHOD SCRIPT ARGS...
#   SCRIPT and its ARGS: main DATASET CFG SHOTS | base2new_train DATASET | base2new_test DATASET
#                        | xd_train | xd_test DATASET
#   e.g. bash scripts/run.sh ProGrad main caltech101 rn50 16  (= bash scripts/prograd/main.sh ...)
# Env: those of the method's scripts (scripts/common.sh).

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
(( $# >= 2 )) || die "expected METHOD SCRIPT ARGS...; usage: bash $0 METHOD SCRIPT ARGS...," \
    "e.g. bash $0 ProGrad main caltech101 rn50 16"
method=$1
script=$2
shift 2
case "$script" in
    main)
        usage_unless 3 $# "bash $0 $method main DATASET CFG SHOTS"
        run_fewshot "$method" "$@" ;;
    base2new_train | base2new_test | xd_test)
        usage_unless 1 $# "bash $0 $method $script DATASET"
        "run_$script" "$method" "$@" ;;
    xd_train)
        usage_unless 0 $# "bash $0 $method xd_train"
        run_xd_train "$method" ;;
    *)
        die "unknown SCRIPT '$script'; use one of: main, base2new_train, base2new_test," \
            "xd_train, xd_test" ;;
esac
