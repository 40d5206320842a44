# Shared logic of the run scripts (sourced by every scripts/<method>/*.sh and scripts/zeroshot.sh).
#
# Each protocol function prints or runs one `python train.py ...` per seed. Run the scripts from
# the repository root. The protocols themselves (run directories, what counts as a finished run)
# are defined once, in experiments/protocols.py, which these functions call through
# tools/protocols.py; it reads each method's defaults (config, shots, epochs, λ) from the METHOD
# declaration of its trainers/<method>.py and the dataset lists from the DATASET declarations of
# datasets/*.py. tools/sweep.py and the tables tool use the same definitions, so a declared
# method (PROGRAD_PLUGINS ones included) runs through `python3 tools/protocols.py run ...` or
# tools/sweep.py without a script of its own. Settings come from environment variables,
# defaulting to the paper:
#
#   DATA     datasets root (required, unless every dataset of the command writes itself, such
#            as tinyworld: then <repository>/data; CoOp's DATASETS.md layout)
#   SEEDS    "1 2 3"          NCTX  16 (the method's)   CSC  False        CTP  end
#   OUTPUT   output           PYTHON python   DRY_RUN 0 (1: print the commands, run nothing)
#   CFG, SHOTS, EPOCHS, LAMBDA, LOADEP, SUBS: per protocol, see the function comments below.
#   LOSS_NAME vertical_grad (the "always project" ablation, methods with λ), ALPHA (KD's α).
#   EXTRA_OPTS ""  config options appended to every train.py command, as whitespace-separated
#            KEY VALUE pairs, e.g. EXTRA_OPTS="MODEL.BACKBONE.PATH /models/RN50.pt" on a machine
#            without internet, or "USE_CUDA False". Values cannot contain spaces. EXTRA_OPTS is
#            not part of the run directory names: use it for settings that do not change the
#            results (paths, workers, test batch size), or give runs with other settings their
#            own OUTPUT.
#
# A run directory holding a complete Dassl log (log.txt or a log.txt-<timestamp> with an
# accuracy line in a `=> result` block, printed after "Finish training"/"Finished training"
# for a training run) is skipped. Any other run is started again without deleting anything:
# training resumes exactly where it stopped (resume/state.pth, trainers/resume.py) and Dassl
# writes its new log next to the old one. A run that another process is running (its lock,
# .run.lock) is skipped.
#
# Settings that differ from the protocol default (NCTX/CSC/CTP in base-to-new, LAMBDA,
# LOSS_NAME, ALPHA, EPOCHS) are appended to the directory name, so an ablation never lands in, and is never skipped
# because of, the directory of the paper-default run.
#
# Commands go to stdout and notes to stderr, so `DRY_RUN=1 bash ... > commands.txt` lists
# exactly what would run.

set -euo pipefail

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

note() {
    printf '%s\n' "$*" >&2
}

# Runs a protocol function of experiments/protocols.py (through the command tools/protocols.py)
# with this script's environment.
run_protocol() {  # FUNCTION ARGS...
    [[ -f train.py && -d configs ]] \
        || die "no train.py and configs/ in $(pwd); run the scripts from the repository root," \
               "e.g. cd /path/to/repo && bash scripts/prograd/main.sh caltech101 rn50 16."
    local python
    python=$(command -v python3 || command -v python) \
        || die "no python3 on PATH; the scripts need it to read tools/protocols.py."
    "$python" tools/protocols.py run --script "$0" "$@"
}

# Few-shot protocol (main.sh; xd_train.sh with DATASET=imagenet). Env: EPOCHS (the method's; by
# shots for CoOp, KD and ProGrad), LAMBDA (ProGrad, ProGradCoCoOp: 0.8 at 8/16 shots on
# flowers/dtd/eurosat, else 1.0).
# Output: $OUTPUT/DATASET/METHOD/CFG_SHOTSshots/nctxN_cscC_ctpP[_lambdaL][_epochsE]/seedS
run_fewshot() {  # METHOD DATASET CFG SHOTS
    run_protocol fewshot "$@"
}

# Base-to-new training with the method's declared defaults; CoOp, KD and ProGrad as ProGrad's
# official base2new_*.sh: SHOTS 4, CFG rn50_ep100 and 100 epochs (ImageNet: rn50_ep50, 50
# epochs), LAMBDA 1.0.
# Output: $OUTPUT/base2new/train_base/DATASET/shots_K/METHOD/CFG[_suffix]/seedS
run_base2new_train() {  # METHOD DATASET
    run_protocol base2new_train "$@"
}

# Env: SUBS ("base new"), LOADEP (the training epochs).
# Output: $OUTPUT/base2new/test_{base,new}/DATASET/shots_K/METHOD/CFG[_suffix]/seedS
run_base2new_test() {  # METHOD DATASET
    run_protocol base2new_test "$@"
}

# Transfer source: the few-shot protocol on ImageNet with the method's xd SHOTS and CFG; CoOp,
# KD and ProGrad as ProGrad's official eval.sh: SHOTS 4, CFG rn50, 50 epochs.
run_xd_train() {  # METHOD
    run_protocol xd_train "$@"
}

# Evaluates the run_xd_train models on DATASET (an ImageNet variant for domain generalisation,
# another dataset for cross-dataset transfer). Env: CFG, SHOTS, EPOCHS, LAMBDA as for
# xd_train.sh (they locate the model), LOADEP (the training epochs).
# Output: $OUTPUT/evaluation/METHOD/CFG_SHOTSshots/VARIANT/DATASET/seedS
run_xd_test() {  # METHOD DATASET
    run_protocol xd_test "$@"
}

# Zero-shot CLIP with the hand-written prompts, CoOp's CFG files; deterministic, so no seeds.
# Env: SUBS ("all"; base/new give the base-to-new columns).
# Output: all -> $OUTPUT/ZeroshotCLIP/CFG/DATASET (CoOp's layout),
#         base/new -> $OUTPUT/base2new/test_{base,new}/DATASET/shots_0/ZeroshotCLIP/CFG
run_zeroshot() {  # DATASET CFG
    run_protocol zeroshot "$@"
}

usage_unless() {  # EXPECTED_ARGS GIVEN_ARGS USAGE
    [[ "$1" == "$2" ]] || die "expected $1 argument(s), got $2. Usage: $3"
}
