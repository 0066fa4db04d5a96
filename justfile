# mixlab tasks. Every recipe is one cargo call; all of them use the release profile, so burn is
# built once and shared by tests, benchmarks and runs.

# List the recipes.
default:
    @just --list

# Run the whole test suite (what CI runs): the Rust tests and the Python package's.
test:
    ./scripts/test

# The paper's comparison (TPW, DoReMi, ODM, uniform) and its report, written to
# runs/reproduce-<preset>/: `just reproduce` (the `tiny` preset, 2,000 steps per run: 54 minutes on
# 2 CPU cores after the build, measured), or
# `just reproduce --preset quick` (minutes), `just reproduce --preset paper-1b --data DIR` (GPU).
reproduce *args:
    cargo run --release -p experiments -- reproduce {{args}}

# The comparison at the `quick` preset: about 7 minutes on 2 CPU cores (after the build).
reproduce-quick *args:
    cargo run --release -p experiments -- reproduce --preset quick {{args}}

# ODM's exploration schedule, smoothing and granularity, compared (the `quick` preset unless
# `--preset` says otherwise): `just ablate`, `just ablate --preset tiny`.
ablate *args:
    cargo run --release -p experiments -- ablate-exploration {{args}}

# Re-render a results directory's report from its run files: `just report results/tiny`.
report dir:
    cargo run --release -p experiments -- report {{dir}}

# A one-to-two-minute ODM training run on the built-in synthetic corpus.
smoke:
    cargo run --release -p experiments -- train --config configs/smoke.toml --out runs/smoke-$(date +%s)

# Train any config: `just train configs/smoke.toml`.
train config:
    cargo run --release -p experiments -- train --config {{config}}

# Throughput tables: data pipeline, training loop vs bare step, model step, mixer, evaluation;
# then the same model step in PyTorch (benches/pytorch_baseline.py) when `$PYTHON` (default
# python3) can import torch and transformers.
bench:
    cargo run --release -p experiments -- bench data && cargo run --release -p experiments -- bench train && RAYON_NUM_THREADS=2 cargo bench -p mixlab-model --bench train_step && cargo bench -p mixlab-mixer-odm && just bench-pytorch

# The PyTorch side of the model-step benchmark alone (skipped with a message without torch).
bench-pytorch:
    if ${PYTHON:-python3} -c "import torch, transformers" 2>/dev/null; then ${PYTHON:-python3} benches/pytorch_baseline.py --threads 2; else echo "skipped the PyTorch baseline: ${PYTHON:-python3} cannot import torch and transformers (pip install torch transformers)"; fi

# mixlab's ingest beside HF tokenizers' own encode_batch_fast, the same tokenizer.json, corpus and
# threads, alternating (benches/tokenize_ab.sh; without a tokenizer.json, a BPE 8192 is trained
# on the mini-pile first). The HF side is skipped with a message when `$PYTHON` (default python3)
# cannot import tokenizers.
bench-tokenizers tokenizer="train" rounds="3":
    cargo build --release -p experiments && benches/tokenize_ab.sh {{tokenizer}} {{rounds}}

# mixlab's training step against PyTorch's: 50 steps of the smoke configuration replayed by
# benches/pytorch_reference.py (transformers, torch AdamW, clip_grad_norm_, LambdaLR) from the
# same weights on the same batches, every step compared; skipped with a message when
# `$PYTHON` (default python3) cannot import torch and transformers.
reference:
    cargo test --release -p experiments --test pytorch_reference -- --nocapture

# Training with glibc's default malloc thresholds against mixlab's, alternating (crates/malloc).
bench-malloc rounds="4":
    cargo build --release -p experiments && benches/malloc_ab.sh {{rounds}}

# The fault campaign: kill -9, a second writer, a full disk (a tmpfs, where mounting is
# allowed) and a flipped checkpoint byte against a small run; prints one table. `FAULT_TRIES=N`.
faults:
    cargo test --release -p experiments --test faults -- --ignored --nocapture

# Formatting and lints, as CI would want them.
lint:
    cargo fmt --all -- --check && cargo clippy --workspace --all-targets --release -- -D warnings
