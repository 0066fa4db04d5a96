# mixlab tasks. Every recipe is one cargo call; all of them use the release profile, so burn is
# built once and shared by tests, benchmarks and runs.

# List the recipes.
default:
    @just --list

# Run the whole test suite (what CI runs).
test:
    cargo test --workspace --release

# The paper's comparison (TPW, DoReMi, ODM, uniform) and its report: `just reproduce`, or
# `just reproduce --preset smoke`, `just reproduce --preset paper-1b --data DIR` (GPU).
reproduce *args:
    cargo run --release -p experiments -- reproduce {{args}}

# ODM's exploration schedule, smoothing and granularity, compared: `just ablate --preset tiny`.
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

# Throughput tables: data pipeline, training loop vs bare step, model step, mixer, evaluation.
bench:
    cargo run --release -p experiments -- bench data && cargo run --release -p experiments -- bench train && cargo bench -p mixlab-model --bench train_step && cargo bench -p mixlab-mixer-odm

# Formatting and lints, as CI would want them.
lint:
    cargo fmt --all -- --check && cargo clippy --workspace --all-targets --release -- -D warnings
