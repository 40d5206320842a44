# Shared logic of the run scripts (sourced by scripts/{prograd,coop}/*.sh and scripts/zeroshot.sh).
#
# Each protocol function prints or runs one `python train.py ...` per seed. Run the scripts from
# the repository root. Settings come from environment variables, defaulting to the paper:
#
#   DATA     datasets root (required; CoOp's DATASETS.md layout)
#   SEEDS    "1 2 3"          NCTX  16        CSC  False        CTP  end
#   OUTPUT   output           PYTHON python   DRY_RUN 0 (1: print the commands, run nothing)
#   CFG, SHOTS, EPOCHS, LAMBDA, LOADEP, SUBS: per protocol, see the function comments below.
#   EXTRA_OPTS ""  config options appended to every train.py command, as whitespace-separated
#            KEY VALUE pairs, e.g. EXTRA_OPTS="MODEL.BACKBONE.PATH /models/RN50.pt" on a machine
#            without internet. Values cannot contain spaces. EXTRA_OPTS is not part of the run
#            directory names: use it for settings that do not change the results (paths, workers,
#            test batch size), or give runs with other settings their own OUTPUT.
#
# A run directory holding a complete Dassl log (log.txt or a log.txt-<timestamp> with an
# accuracy line in a `=> result` block, printed after "Finish training"/"Finished training"
# for a training run) is skipped. Any other run is started again without deleting anything:
# Dassl resumes training from the last checkpoint in the directory and writes its new log next
# to the old one.
#
# Settings that differ from the protocol default (NCTX/CSC/CTP in base-to-new, LAMBDA, EPOCHS)
# are appended to the directory name, so an ablation never lands in, and is never skipped
# because of, the directory of the paper-default run.
#
# Commands go to stdout and notes to stderr, so `DRY_RUN=1 bash ... > commands.txt` lists
# exactly what would run.

set -euo pipefail

# ProGrad's README: λ = 0.8 for 8 and 16 shots on these three, 1.0 everywhere else.
readonly LAMBDA_0_8_DATASETS="oxford_flowers dtd eurosat"
readonly DEFAULT_VARIANT="nctx16_cscFalse_ctpend"

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

note() {
    printf '%s\n' "$*" >&2
}

is_dry_run() {
    [[ -n "${DRY_RUN:-}" && "${DRY_RUN}" != 0 ]]
}

contains_word() {  # LIST WORD
    [[ " $1 " == *" $2 "* ]]
}

check_positive_int() {  # NAME VALUE
    [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1=$2 is not a positive integer; pass e.g. $1=16."
}

check_choice() {  # NAME VALUE ALLOWED...
    local name=$1 value=$2
    shift 2
    if [[ "$value" == *" "* ]] || ! contains_word "$*" "$value"; then
        die "$name=$value is not one of: $*."
    fi
}

# Reads the settings shared by every protocol and checks where we are; call before anything else.
load_settings() {
    [[ -f train.py && -d configs ]] \
        || die "no train.py and configs/ in $(pwd); run the scripts from the repository root," \
               "e.g. cd /path/to/repo && bash scripts/prograd/main.sh caltech101 rn50 16."
    [[ -n "${DATA:-}" ]] \
        || die "DATA is not set; export the datasets root (the folder holding caltech-101/," \
               "oxford_pets/, ... as in CoOp's DATASETS.md)," \
               "e.g. DATA=/path/to/datasets bash $0 ..."
    if ! is_dry_run && [[ ! -d "$DATA" ]]; then
        die "DATA=$DATA is not a directory; point DATA at the datasets root."
    fi
    SEEDS=${SEEDS:-1 2 3}
    NCTX=${NCTX:-16}
    CSC=${CSC:-False}
    CTP=${CTP:-end}
    OUTPUT=${OUTPUT:-output}
    PYTHON=${PYTHON:-python}
    local seed
    for seed in $SEEDS; do
        [[ "$seed" =~ ^[0-9]+$ ]] \
            || die "SEEDS=\"$SEEDS\" holds '$seed'; give integers, e.g. SEEDS=\"1 2 3\"."
    done
    [[ -n "${SEEDS// /}" ]] || die "SEEDS is empty; give at least one seed, e.g. SEEDS=1."
    check_positive_int NCTX "$NCTX"
    check_choice CSC "$CSC" True False
    check_choice CTP "$CTP" end middle front
    if [[ -n "${EPOCHS:-}" ]]; then check_positive_int EPOCHS "$EPOCHS"; fi
    extra_opts_settings
}

# Sets EXTRA (the EXTRA_OPTS words, appended to every train.py command) and checks that they
# pair up as KEY VALUE: an odd count would shift every later key into a value position.
extra_opts_settings() {
    EXTRA=()
    read -r -a EXTRA <<< "${EXTRA_OPTS:-}"
    local example='e.g. EXTRA_OPTS="MODEL.BACKBONE.PATH /models/RN50.pt DATALOADER.NUM_WORKERS 4"'
    (( ${#EXTRA[@]} % 2 == 0 )) \
        || die "EXTRA_OPTS=\"$EXTRA_OPTS\" has ${#EXTRA[@]} words, not KEY VALUE pairs" \
               "(values cannot contain spaces); $example."
    local i
    for (( i = 0; i < ${#EXTRA[@]}; i += 2 )); do
        [[ "${EXTRA[i]}" =~ ^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$ ]] \
            || die "EXTRA_OPTS=\"$EXTRA_OPTS\" has '${EXTRA[i]}' where a config key such as" \
                   "MODEL.BACKBONE.PATH should be; give KEY VALUE pairs, $example."
    done
}

yaml_names() {  # DIR -> the names of its .yaml files, space-separated
    local file names=()
    for file in "$1"/*.yaml; do
        if [[ -f "$file" ]]; then names+=("$(basename "$file" .yaml)"); fi
    done
    echo "${names[*]}"
}

dataset_config() {  # DATASET -> path of its config file
    local path="configs/datasets/$1.yaml"
    [[ -f "$path" ]] || die "no dataset config $path; valid names: $(yaml_names configs/datasets)"
    echo "$path"
}

trainer_config() {  # TRAINER CFG -> path of its config file
    local path="configs/trainers/$1/$2.yaml"
    [[ -f "$path" ]] || die "no trainer config $path; valid CFG names for $1:" \
        "$(yaml_names "configs/trainers/$1")"
    echo "$path"
}

# Epochs of the few-shot protocol (CoOp/ProGrad): 1 shot 50, 2-4 shots 100, more 200; ImageNet 50.
fewshot_epochs() {  # DATASET SHOTS
    if [[ "$1" == imagenet || "$2" -le 1 ]]; then
        echo 50
    elif [[ "$2" -le 4 ]]; then
        echo 100
    else
        echo 200
    fi
}

fewshot_lambda() {  # DATASET SHOTS
    if [[ "$2" -ge 8 ]] && contains_word "$LAMBDA_0_8_DATASETS" "$1"; then
        echo 0.8
    else
        echo 1.0
    fi
}

same_number() {  # A B: true when numerically equal ("1" and "1.0")
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 == b + 0) }'
}

# Sets LAMBDA_OPTS (the LOSS.LAMBDA option, ProGrad only) and appends to SUFFIX when LAMBDA
# overrides the protocol default.
lambda_settings() {  # TRAINER DEFAULT_LAMBDA
    LAMBDA_OPTS=()
    if [[ "$1" != ProGrad ]]; then
        if [[ -n "${LAMBDA:-}" ]]; then note "note: LAMBDA=$LAMBDA is ignored: $1 has no λ."; fi
        return 0
    fi
    local lambda=${LAMBDA:-$2}
    [[ "$lambda" =~ ^[0-9]*\.?[0-9]+$ ]] \
        || die "LAMBDA=$lambda is not a number; pass e.g. LAMBDA=0.8."
    LAMBDA_OPTS=(LOSS.LAMBDA "$lambda")
    if ! same_number "$lambda" "$2"; then SUFFIX+="_lambda${lambda}"; fi
}

# Sets EPOCH_COUNT (EPOCHS or the default) and appends to SUFFIX when EPOCHS overrides it.
epoch_settings() {  # DEFAULT_EPOCHS
    EPOCH_COUNT=${EPOCHS:-$1}
    if [[ "$EPOCH_COUNT" != "$1" ]]; then SUFFIX+="_epochs${EPOCH_COUNT}"; fi
}

coop_opts() {  # prints the prompt options, one per line
    printf '%s\n' TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" \
        TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP"
}

# True when FILE is a complete log: an accuracy line inside a `=> result` block, and for a
# training run only a block printed after training finished (a block before it is validation).
log_is_complete() {  # FILE KIND(train|eval)
    awk -v kind="$2" '
        /^Finish(ed)? training/ { trained = 1; in_result = 0 }
        /^=> result/ { in_result = (kind == "eval" || trained) }
        in_result && /^\* accuracy: [0-9.]+%/ { found = 1 }
        END { exit !found }
    ' "$1"
}

run_is_finished() {  # DIR KIND
    local log
    for log in "$1"/log.txt "$1"/log.txt-*; do
        if [[ -f "$log" ]] && log_is_complete "$log" "$2"; then return 0; fi
    done
    return 1
}

# Skips DIR when finished; otherwise prints (DRY_RUN) or runs the command.
run_or_skip() {  # KIND DIR COMMAND...
    local kind=$1 dir=$2
    shift 2
    if run_is_finished "$dir" "$kind"; then
        note "skip: $dir has a complete log"
        return 0
    fi
    if [[ -d "$dir" && "$kind" == train ]]; then
        note "rerun: $dir has no complete log; training resumes from its last checkpoint"
    elif [[ -d "$dir" ]]; then
        note "rerun: $dir has no complete log; evaluating again"
    else
        note "run: $dir"
    fi
    if is_dry_run; then
        local quoted
        quoted=$(printf '%q ' "$@")
        echo "${quoted% }"
        return 0
    fi
    "$@" || die "the run in $dir failed (exit $?); see its log.txt*, fix, and rerun the same" \
        "command: finished runs are skipped and this one resumes."
}

# Eval-only runs need the trained checkpoint; a dry run only warns, so it can list everything.
require_checkpoint() {  # MODEL_DIR EPOCH HOW_TO_TRAIN
    local path="$1/prompt_learner/model.pth.tar-$2"
    [[ -f "$path" ]] && return 0
    if is_dry_run; then
        note "note: $path does not exist yet; train it first: $3"
    else
        die "no checkpoint $path; train it first ($3), or set LOADEP to an epoch that was saved."
    fi
}

# Few-shot protocol (main.sh; xd_train.sh with DATASET=imagenet). Env: EPOCHS (by shots),
# LAMBDA (ProGrad: 0.8 at 8/16 shots on flowers/dtd/eurosat, else 1.0).
# Output: $OUTPUT/DATASET/TRAINER/CFG_SHOTSshots/nctxN_cscC_ctpP[_lambdaL][_epochsE]/seedS
run_fewshot() {  # TRAINER DATASET CFG SHOTS
    local trainer=$1 dataset=$2 cfg=$3 shots=$4
    load_settings
    check_positive_int SHOTS "$shots"
    local dataset_yaml trainer_yaml
    dataset_yaml=$(dataset_config "$dataset")
    trainer_yaml=$(trainer_config "$trainer" "$cfg")
    SUFFIX=""
    lambda_settings "$trainer" "$(fewshot_lambda "$dataset" "$shots")"
    epoch_settings "$(fewshot_epochs "$dataset" "$shots")"
    local variant="nctx${NCTX}_csc${CSC}_ctp${CTP}${SUFFIX}" seed dir
    local -a opts
    mapfile -t opts < <(coop_opts)
    for seed in $SEEDS; do
        dir="$OUTPUT/$dataset/$trainer/${cfg}_${shots}shots/$variant/seed$seed"
        run_or_skip train "$dir" "$PYTHON" train.py --root "$DATA" --seed "$seed" \
            --trainer "$trainer" --dataset-config-file "$dataset_yaml" \
            --config-file "$trainer_yaml" --output-dir "$dir" \
            "${LAMBDA_OPTS[@]}" "${opts[@]}" DATASET.NUM_SHOTS "$shots" \
            OPTIM.MAX_EPOCH "$EPOCH_COUNT" "${EXTRA[@]}"
    done
}

# Base-to-new settings as in ProGrad's official base2new_*.sh: SHOTS 4, CFG rn50_ep100 and 100
# epochs (ImageNet: rn50_ep50, 50 epochs), LAMBDA 1.0. Sets B2N_* variables.
base2new_settings() {  # TRAINER DATASET
    load_settings
    B2N_SHOTS=${SHOTS:-4}
    check_positive_int SHOTS "$B2N_SHOTS"
    local default_epochs=100 default_cfg=rn50_ep100
    if [[ "$2" == imagenet ]]; then default_epochs=50 default_cfg=rn50_ep50; fi
    B2N_CFG=${CFG:-$default_cfg}
    B2N_DATASET_YAML=$(dataset_config "$2")
    B2N_TRAINER_YAML=$(trainer_config "$1" "$B2N_CFG")
    SUFFIX=""
    local variant="nctx${NCTX}_csc${CSC}_ctp${CTP}"
    # The official layout has no prompt settings in its path; only a non-default one adds them.
    if [[ "$variant" != "$DEFAULT_VARIANT" ]]; then SUFFIX+="_$variant"; fi
    lambda_settings "$1" 1.0
    epoch_settings "$default_epochs"
    B2N_COMMON="$2/shots_${B2N_SHOTS}/$1/${B2N_CFG}${SUFFIX}"
}

# Output: $OUTPUT/base2new/train_base/DATASET/shots_K/TRAINER/CFG[_suffix]/seedS
run_base2new_train() {  # TRAINER DATASET
    local trainer=$1 dataset=$2 seed dir
    base2new_settings "$trainer" "$dataset"
    local -a opts
    mapfile -t opts < <(coop_opts)
    for seed in $SEEDS; do
        dir="$OUTPUT/base2new/train_base/$B2N_COMMON/seed$seed"
        run_or_skip train "$dir" "$PYTHON" train.py --root "$DATA" --seed "$seed" \
            --trainer "$trainer" --dataset-config-file "$B2N_DATASET_YAML" \
            --config-file "$B2N_TRAINER_YAML" --output-dir "$dir" \
            "${LAMBDA_OPTS[@]}" "${opts[@]}" DATASET.NUM_SHOTS "$B2N_SHOTS" \
            DATASET.SUBSAMPLE_CLASSES base OPTIM.MAX_EPOCH "$EPOCH_COUNT" "${EXTRA[@]}"
    done
}

# Env: SUBS ("base new"), LOADEP (the training epochs).
# Output: $OUTPUT/base2new/test_{base,new}/DATASET/shots_K/TRAINER/CFG[_suffix]/seedS
run_base2new_test() {  # TRAINER DATASET
    local trainer=$1 dataset=$2 seed sub dir model_dir
    base2new_settings "$trainer" "$dataset"
    local subs=${SUBS:-base new} load_epoch=${LOADEP:-$EPOCH_COUNT}
    check_positive_int LOADEP "$load_epoch"
    for sub in $subs; do check_choice SUBS "$sub" base new; done
    local -a opts
    mapfile -t opts < <(coop_opts)
    local train_script="scripts/${trainer,,}/base2new_train.sh $dataset"
    for seed in $SEEDS; do
        model_dir="$OUTPUT/base2new/train_base/$B2N_COMMON/seed$seed"
        require_checkpoint "$model_dir" "$load_epoch" "bash $train_script"
        for sub in $subs; do
            dir="$OUTPUT/base2new/test_$sub/$B2N_COMMON/seed$seed"
            run_or_skip eval "$dir" "$PYTHON" train.py --root "$DATA" --seed "$seed" \
                --trainer "$trainer" --dataset-config-file "$B2N_DATASET_YAML" \
                --config-file "$B2N_TRAINER_YAML" --output-dir "$dir" \
                --model-dir "$model_dir" --load-epoch "$load_epoch" --eval-only \
                "${opts[@]}" DATASET.NUM_SHOTS "$B2N_SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub" \
                "${EXTRA[@]}"
        done
    done
}

# Transfer source: the few-shot protocol on ImageNet with SHOTS 4 and CFG rn50 (ProGrad's
# official eval.sh), 50 epochs.
run_xd_train() {  # TRAINER
    run_fewshot "$1" imagenet "${CFG:-rn50}" "${SHOTS:-4}"
}

# Evaluates the run_xd_train models on DATASET (an ImageNet variant for domain generalisation,
# another dataset for cross-dataset transfer). Env: CFG, SHOTS, EPOCHS, LAMBDA as for
# xd_train.sh (they locate the model), LOADEP (the training epochs).
# Output: $OUTPUT/evaluation/TRAINER/CFG_SHOTSshots/VARIANT/DATASET/seedS
run_xd_test() {  # TRAINER DATASET
    local trainer=$1 dataset=$2 seed dir model_dir
    load_settings
    [[ "$dataset" != imagenet ]] \
        || die "imagenet is the source dataset (its accuracy is in the xd_train.sh run);" \
               "pass a target, e.g. imagenetv2 or caltech101."
    local cfg=${CFG:-rn50} shots=${SHOTS:-4}
    check_positive_int SHOTS "$shots"
    local dataset_yaml trainer_yaml
    dataset_yaml=$(dataset_config "$dataset")
    trainer_yaml=$(trainer_config "$trainer" "$cfg")
    SUFFIX=""
    lambda_settings "$trainer" "$(fewshot_lambda imagenet "$shots")"
    epoch_settings "$(fewshot_epochs imagenet "$shots")"
    local load_epoch=${LOADEP:-$EPOCH_COUNT}
    check_positive_int LOADEP "$load_epoch"
    local variant="nctx${NCTX}_csc${CSC}_ctp${CTP}${SUFFIX}"
    local common="$trainer/${cfg}_${shots}shots/$variant"
    local -a opts
    mapfile -t opts < <(coop_opts)
    for seed in $SEEDS; do
        model_dir="$OUTPUT/imagenet/$common/seed$seed"
        require_checkpoint "$model_dir" "$load_epoch" "bash scripts/${trainer,,}/xd_train.sh"
        dir="$OUTPUT/evaluation/$common/$dataset/seed$seed"
        run_or_skip eval "$dir" "$PYTHON" train.py --root "$DATA" --seed "$seed" \
            --trainer "$trainer" --dataset-config-file "$dataset_yaml" \
            --config-file "$trainer_yaml" --output-dir "$dir" \
            --model-dir "$model_dir" --load-epoch "$load_epoch" --eval-only "${opts[@]}" \
            "${EXTRA[@]}"
    done
}

# Zero-shot CLIP with the hand-written prompts, CoOp's CFG files; deterministic, so no seeds.
# Env: SUBS ("all"; base/new give the base-to-new columns).
# Output: all -> $OUTPUT/ZeroshotCLIP/CFG/DATASET (CoOp's layout),
#         base/new -> $OUTPUT/base2new/test_{base,new}/DATASET/shots_0/ZeroshotCLIP/CFG
run_zeroshot() {  # DATASET CFG
    local dataset=$1 cfg=$2 sub dir
    load_settings
    local dataset_yaml trainer_yaml
    dataset_yaml=$(dataset_config "$dataset")
    trainer_yaml=$(trainer_config CoOp "$cfg")
    local subs=${SUBS:-all}
    for sub in $subs; do check_choice SUBS "$sub" all base new; done
    for sub in $subs; do
        local -a opts=()
        if [[ "$sub" == all ]]; then
            dir="$OUTPUT/ZeroshotCLIP/$cfg/$dataset"
        else
            dir="$OUTPUT/base2new/test_$sub/$dataset/shots_0/ZeroshotCLIP/$cfg"
            opts=(DATASET.SUBSAMPLE_CLASSES "$sub")
        fi
        run_or_skip eval "$dir" "$PYTHON" train.py --root "$DATA" --trainer ZeroshotCLIP \
            --dataset-config-file "$dataset_yaml" --config-file "$trainer_yaml" \
            --output-dir "$dir" --eval-only "${opts[@]}" "${EXTRA[@]}"
    done
}

usage_unless() {  # EXPECTED_ARGS GIVEN_ARGS USAGE
    [[ "$1" == "$2" ]] || die "expected $1 argument(s), got $2. Usage: $3"
}
