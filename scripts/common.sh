#!/usr/bin/env bash
# Settings shared by step1..step5, sourced by each. Every value can be set from the environment,
# which is how scripts/demo.sh drives the same scripts on synthetic data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python}"
DATAROOT="${DATAROOT:-data}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-tensorboard}"
RESULT_DIR="${RESULT_DIR:-result}"
LOG_DIR="${LOG_DIR:-logs}"
WORKERS="${WORKERS:-4}"
SAVE_COUNT="${SAVE_COUNT:-5000}"
GMM_KEEP_STEP="${GMM_KEEP_STEP:-100000}"
GMM_DECAY_STEP="${GMM_DECAY_STEP:-100000}"
TOM_KEEP_STEP="${TOM_KEEP_STEP:-100000}"
TOM_DECAY_STEP="${TOM_DECAY_STEP:-100000}"
GMM_NAME="${GMM_NAME:-gmm_train_new}"
GMM_TEST_NAME="${GMM_TEST_NAME:-gmm_traintest_new}"
TOM_NAME="${TOM_NAME:-tom_train_new}"
TOM_TEST_NAME="${TOM_TEST_NAME:-tom_test_new}"
GMM_CHECKPOINT="${GMM_CHECKPOINT:-$CHECKPOINT_DIR/$GMM_NAME/gmm_final.pth}"
TOM_CHECKPOINT="${TOM_CHECKPOINT:-$CHECKPOINT_DIR/$TOM_NAME/tom_final.pth}"
# Pair lists tested in steps 2 and 5: $TEST_LISTS where it is set, else test_pairs.txt and, where the data
# has it, test_pairs_paired.txt (each test person in their own cloth, which SSIM and LPIPS need).
TEST_LISTS_FROM_USER="${TEST_LISTS+set}"
TEST_LISTS="${TEST_LISTS:-test_pairs.txt}"
COMMON_ARGS=(--dataroot "$DATAROOT" --tensorboard_dir "$TENSORBOARD_DIR" --workers "$WORKERS")

# with_paired_test_list [write]: adds test_pairs_paired.txt to TEST_LISTS where the data has it (and the user
# did not set TEST_LISTS). VITON ships no such list: with "write" (step 2, whose warps step 5 needs for the same
# pairs) it is first written where absent, derived from test_pairs.txt as evaluate.py derives it, and
# announced; data without VITON's naming is tested on test_pairs.txt alone, with a note. An existing list is
# used as it is.
with_paired_test_list() {
    [ -z "$TEST_LISTS_FROM_USER" ] || return 0
    local paired="$DATAROOT/test_pairs_paired.txt"
    if [ "${1:-}" = write ] && [ ! -e "$paired" ] && [ -f "$DATAROOT/test_pairs.txt" ]; then
        run_logged paired-test-list "$PYTHON" evaluate.py --dataroot "$DATAROOT" --datamode test \
            --write_paired_list \
            || echo "note: testing test_pairs.txt only; write $paired (one 'person cloth' line per person in their own cloth) for SSIM and LPIPS"
    fi
    if [ -f "$paired" ]; then
        TEST_LISTS="$TEST_LISTS test_pairs_paired.txt"
    fi
}

# run_logged STEP_NAME COMMAND...: runs the command, tee'ing its output into $LOG_DIR/STEP_NAME-<time>.log.
run_logged() {
    local step_name="$1"; shift
    mkdir -p "$LOG_DIR"
    local stem="$LOG_DIR/$step_name-$(date +%Y%m%d-%H%M%S)" n=1
    local log_file="$stem.log"
    while [ -e "$log_file" ]; do   # two runs in one second (step 2 tests two lists): never overwrite a log
        n=$((n + 1)); log_file="$stem-$n.log"
    done
    echo "[$step_name] $*" | tee "$log_file"
    "$@" 2>&1 | tee -a "$log_file"
}

# place_results SRC DST: copies GMM's warp folder SRC to DST (where the TOM stage reads it). A DST
# that already has files is first moved aside to DST.bak-<time>, and the script says so:
# nothing of the user's is overwritten or deleted.
place_results() {
    local src="$1" dst="$2"
    if [ ! -d "$src" ]; then
        echo "error: $src does not exist; run the GMM test first" >&2
        return 1
    fi
    if [ -d "$dst" ] && [ -n "$(ls -A "$dst")" ]; then
        local backup="$dst.bak-$(date +%Y%m%d-%H%M%S)"
        mv "$dst" "$backup"
        echo "note: $dst already existed; moved it to $backup"
    fi
    mkdir -p "$dst"
    # "$src/." copies the files into $dst; "cp -r $src $dst" would nest them in $dst/<name>/ when $dst
    # already exists (empty). test.py names them by pair keys, which never hold a folder.
    cp -r "$src/." "$dst"
    echo "placed $(ls "$dst" | wc -l) files: $src -> $dst"
}
