#!/usr/bin/env bash
# Whole training runs with glibc's default malloc thresholds and with mixlab's (crates/malloc),
# alternating so that the machine's drift hits both alike. Prints wall time, minor page faults and
# peak RSS per run, then checks that both settings wrote the same losses and final weights.
#
#   benches/malloc_ab.sh [ROUNDS] [CONFIG]        (default: 4 rounds of configs/smoke.toml)
#
# Needs the release binary (cargo build --release -p experiments) and GNU time (/usr/bin/time).
set -euo pipefail
rounds=${1:-4}
config=${2:-configs/smoke.toml}
bin=${BIN:-target/release/experiments}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -x "$bin" ] || { echo "no $bin: run cargo build --release -p experiments first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time" >&2; exit 1; }
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $config, $rounds rounds"
for round in $(seq "$rounds"); do
  for mode in default keep; do
    rm -rf "$work/$mode"
    /usr/bin/time -o "$work/time" -f "%e s, minor faults %R, peak RSS %M KiB" \
      env MIXLAB_MALLOC=$mode "$bin" train --config "$config" --out "$work/$mode" >/dev/null 2>&1
    echo "round $round, malloc $mode: $(cat "$work/time")"
  done
done
# The step timings differ by design; everything else in metrics.jsonl must not.
strip() { sed -E 's/"timing":\{[^}]*\},//' "$1/metrics.jsonl"; }
if [ "$(strip "$work/default")" == "$(strip "$work/keep")" ] &&
   cmp -s "$work/default/final/model.safetensors" "$work/keep/final/model.safetensors"; then
  echo "same losses, metrics and final weights with both settings"
else
  echo "the two settings computed different numbers" >&2
  exit 1
fi
