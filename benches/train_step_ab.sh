#!/bin/sh
# The training step of two mixlab builds and of PyTorch, side by side, in alternating rounds.
#
#   benches/train_step_ab.sh OLD_TRAIN_STEP NEW_TRAIN_STEP [ROUNDS] [PRESETS...]
#
# OLD_TRAIN_STEP and NEW_TRAIN_STEP are copies of the `train_step` bench binary of two commits
# (`cargo bench -p mixlab-model --bench train_step --no-run` prints its path; copy it before
# checking out the other commit). For 1 and then 2 threads, each round runs OLD, NEW and then
# benches/pytorch_baseline.py (skipped when `$PYTHON`, default python3, cannot import torch and
# transformers), so that the machine's drift hits all three alike; one line per run with each
# preset's tokens/s (the median of 10 timed steps). ROUNDS defaults to 3, PRESETS to `tiny small`.
set -eu
old=$1
new=$2
rounds=${3:-3}
shift 2
[ $# -gt 0 ] && shift
presets=${*:-tiny small}
python=${PYTHON:-python3}
here=$(dirname "$0")
# "PRESET TOKENS/S" pairs from either side's lines ("tiny  params ... 3165 tokens/s ..." and
# "pytorch 2.9.1 tiny: ... 5,005 tokens/s (range ...").
rates() {
    grep -E 'tokens/s' \
        | sed -E -e 's/^pytorch [^ ]+ ([a-z0-9-]+):.* ([0-9,]+) tokens\/s.*/\1 \2/' \
            -e 's/^([a-z0-9-]+) .* ([0-9,]+) tokens\/s.*/\1 \2/' \
        | tr '\n' ' '
}
for threads in 1 2; do
    round=1
    while [ "$round" -le "$rounds" ]; do
        for side in old new; do
            if [ "$side" = old ]; then binary=$old; else binary=$new; fi
            # shellcheck disable=SC2086
            echo "threads $threads round $round $side: $(RAYON_NUM_THREADS=$threads "$binary" --steps 10 $presets 2>&1 | grep params | rates)"
        done
        if "$python" -c "import torch, transformers" 2>/dev/null; then
            # shellcheck disable=SC2086
            echo "threads $threads round $round pytorch: $(OMP_NUM_THREADS=$threads "$python" "$here/pytorch_baseline.py" --threads "$threads" --steps 10 $presets 2>&1 | rates)"
        fi
        round=$((round + 1))
    done
done
