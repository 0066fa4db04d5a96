# mixlab tasks. Every recipe is one cargo call; all of them use the release profile, so burn is
# built once and shared by tests, benchmarks and runs.

# List the recipes.
default:
    @just --list

# Run the whole test suite (what CI runs).
test:
    cargo test --workspace --release

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
