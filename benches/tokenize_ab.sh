#!/bin/sh
# mixlab's ingest beside HF tokenizers' own encode_batch_fast: the same tokenizer.json, the same
# corpus, the same threads, in alternating rounds.
#
#   benches/tokenize_ab.sh [TOKENIZER_JSON] [ROUNDS] [INPUT]
#
# TOKENIZER_JSON: a tokenizer.json (GPT-NeoX-20B's, for the paper's setup); without one (or
# with `train`), `experiments prepare-data --tokenizer train:8192` trains one on INPUT first,
# into a temporary directory, and that one is used. ROUNDS defaults to 3, INPUT to the shared
# mini-pile. Each round runs `experiments bench data --tokenizer TOKENIZER_JSON` (its "ingest:
# text" line: reading, decompressing, tokenizing, packing and writing Parquet shards) and then
# benches/hf_tokenizers_baseline.py (encoding only, the texts already in memory) under
# `$PYTHON` (default python3), skipped with a message when it cannot import tokenizers. Both
# use `RAYON_NUM_THREADS` threads (default 2). `$MIXLAB` is the experiments binary (default
# target/release/experiments; build it first: `cargo build --release -p experiments`).
set -eu
tokenizer=${1:-train}
rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
input=${3:-$here/../../shared/data/mini-pile}
mixlab=${MIXLAB:-target/release/experiments}
python=${PYTHON:-python3}
threads=${RAYON_NUM_THREADS:-2}
export RAYON_NUM_THREADS="$threads"
if [ ! -x "$mixlab" ]; then
    echo "error: $mixlab is not an executable (cargo build --release -p experiments, or set MIXLAB)" >&2
    exit 2
fi
if [ ! -e "$input" ]; then
    echo "error: $input does not exist: pass a Pile-format corpus as the third argument" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$tokenizer" = train ]; then
    "$mixlab" prepare-data --input "$input" --tokenizer train:8192 --seq-len 256 \
        --out "$work/dataset" > "$work/prepare.log" 2>&1 \
        || { cat "$work/prepare.log" >&2; exit 1; }
    tokenizer=$work/dataset/tokenizer.json
    echo "tokenizer: BPE 8192 trained on $input by prepare-data"
elif [ ! -f "$tokenizer" ]; then
    echo "error: $tokenizer is not a tokenizer.json" >&2
    exit 2
fi
has_hf=yes
"$python" -c "import tokenizers" 2>/dev/null || has_hf=no
round=1
while [ "$round" -le "$rounds" ]; do
    # A failing side stops the comparison with its own output, never an empty line.
    "$mixlab" bench data --input "$input" --tokenizer "$tokenizer" --samples 1000 \
        > "$work/mixlab.log" 2>&1 || { cat "$work/mixlab.log" >&2; exit 1; }
    echo "round $round mixlab: $(grep 'ingest: text' "$work/mixlab.log")"
    if [ "$has_hf" = yes ]; then
        "$python" "$here/hf_tokenizers_baseline.py" --tokenizer "$tokenizer" --input "$input" \
            --threads "$threads" --rounds 1 > "$work/hf.log" 2>&1 \
            || { cat "$work/hf.log" >&2; exit 1; }
        echo "round $round hf: $(grep '^round' "$work/hf.log")"
    else
        echo "round $round hf: skipped ($python cannot import tokenizers: pip install tokenizers)"
    fi
    round=$((round + 1))
done
