#!/usr/bin/env bash
# The GPU measurements of issue 17 in one run, written as a Markdown table:
#
#   1. the training step (forward, backward, clip, AdamW) of `paper-1b` in bf16 at micro-batches
#      of 8, 16, 30 and 60 sequences x 1024 tokens, built without and with burn's kernel fusion
#      and autotuning (`--features fusion`): tokens/s, model TFLOP/s, model-FLOPs utilisation
#      against the GPU's dense bf16 peak, peak GPU memory;
#   2. bf16 against f32: `small` trained for 300 steps on one fixed batch in each precision from
#      the same initial weights (saved by the f32 run, loaded by the bf16 one); the largest
#      relative difference of the two loss curves, which must stay within 2%.
#
# Usage (from the repository root):
#   scripts/gpu-bench.sh [--device cuda:0|cpu] [--out FILE] [--bin-dir DIR] [--build DIR]
#                        [--preset NAME] [--batches "8 16 30 60"] [--steps N] [--warmup N]
#                        [--check-preset NAME] [--check-steps N] [--peak-tflops X] [--timeout S]
#
#   --bin-dir DIR  use DIR/train_step and DIR/train_step-fusion (or their .xz) instead of
#                  building them here: a machine without a Rust toolchain, or a short GPU lease.
#   --build DIR    only build both benchmark binaries into DIR, xz-compressed (about 20 MB in
#                  all), and stop: prepare them on a CPU machine, carry DIR to the GPU machine.
#   --device cpu   runs everything on the CPU at a small scale (the `tiny` preset, micro-batches
#                  of 2 and 4, a 20-step check in f32 against f32, as the CPU has no bf16 path):
#                  checks the script end to end, measures nothing about GPUs.
#
# The output goes to --out (default runs/gpu-bench-DATE.md), never into results/. Autotune
# results are cached by cubecl under the workspace's target/autotune/ (its `target` cache
# location: the nearest directory above the working directory holding a Cargo.toml); each run's
# untimed warm-up steps (--warmup, default 2) take the tuning, so the timed steps do not.
set -euo pipefail
cd "$(dirname "$0")/.."
command_line="scripts/gpu-bench.sh $*"

device=cuda:0
out=""
bin_dir=""
build_dir=""
preset=""
batches=""
steps=5
warmup=2
check_preset=""
check_steps=""
# NVIDIA H100 / H200 SXM dense bf16 peak, TFLOP/s (the same Hopper tensor cores in both).
peak_tflops=989
timeout_s=240
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --build) build_dir=$2; shift 2 ;;
        --preset) preset=$2; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --check-preset) check_preset=$2; shift 2 ;;
        --check-steps) check_steps=$2; shift 2 ;;
        --peak-tflops) peak_tflops=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "gpu-bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

case "$device" in
    cpu)
        precision_flag=""
        precision_name=f32
        preset=${preset:-tiny}
        batches=${batches:-2 4}
        check_preset=${check_preset:-tiny}
        check_steps=${check_steps:-20}
        ;;
    cuda*)
        precision_flag=--bf16
        precision_name="bf16 (bf16 weights and optimizer state)"
        preset=${preset:-paper-1b}
        batches=${batches:-8 16 30 60}
        check_preset=${check_preset:-small}
        check_steps=${check_steps:-300}
        ;;
    *) echo "gpu-bench.sh: --device $device: expected cpu or cuda[:N]" >&2; exit 2 ;;
esac

# The benchmark binary of one feature set: built with cargo (the fusion build in a target
# directory of its own, $MIXLAB_FUSION_TARGET_DIR, default target/fusion: changing burn's
# features rebuilds burn), its path printed.
fusion_target=${MIXLAB_FUSION_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fusion}
build_bench() {
    local features=$1 target=$2
    CARGO_TARGET_DIR=$target cargo bench -p mixlab-model --bench train_step --no-run \
        ${features:+--features "$features"} 2>&1 \
        | tee /dev/stderr \
        | sed -n -E 's/^ *Executable benches\/train_step\.rs \((.*)\)$/\1/p' \
        | tail -n 1
}

if [ -n "$build_dir" ]; then
    mkdir -p "$build_dir"
    plain=$(build_bench "" "${CARGO_TARGET_DIR:-target}")
    fused=$(build_bench fusion "$fusion_target")
    xz -T0 -c "$plain" > "$build_dir/train_step.xz"
    xz -T0 -c "$fused" > "$build_dir/train_step-fusion.xz"
    ls -l "$build_dir"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# DIR/NAME, or DIR/NAME.xz decompressed into the scratch directory.
binary() {
    local dir=$1 name=$2
    if [ -x "$dir/$name" ]; then
        echo "$dir/$name"
    elif [ -f "$dir/$name.xz" ]; then
        xz -d -c "$dir/$name.xz" > "$work/$name" && chmod +x "$work/$name" && echo "$work/$name"
    else
        echo "gpu-bench.sh: neither $dir/$name nor $dir/$name.xz exists" >&2
        return 1
    fi
}
if [ -n "$bin_dir" ]; then
    plain=$(binary "$bin_dir" train_step)
    fused=$(binary "$bin_dir" train_step-fusion)
else
    plain=$(build_bench "" "${CARGO_TARGET_DIR:-target}")
    fused=$(build_bench fusion "$fusion_target")
fi
[ -x "$plain" ] && [ -x "$fused" ] || { echo "gpu-bench.sh: no benchmark binaries" >&2; exit 1; }

stamp=$(date -u +%Y-%m-%dT%H%MZ)
out=${out:-runs/gpu-bench-$stamp.md}
mkdir -p "$(dirname "$out")"
# The table is built in the scratch directory and moved to --out at the end, so an interrupted
# run never leaves a half-written table there (or replaces an earlier one).
final=$out
out=$work/table.md
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ "$device" = cpu ]; then
    machine="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) threads"
else
    machine="GPU: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader -i "${device#cuda:}" 2>/dev/null || echo unknown)"
fi

# Runs the benchmark; prints its result line, or `FAILED (...)` with the exit status and the
# last line of its output. The GPU's peak memory, sampled by nvidia-smi every 200 ms, goes to
# $work/peak (empty on the CPU); the run's whole output to $work/run.log.
run_bench() {
    local log=$work/run.log memlog=$work/memory.log sampler=""
    : > "$work/peak"
    if [ "$device" != cpu ] && command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits \
            -i "${device#cuda:}" -lms 200 > "$memlog" 2>/dev/null &
        sampler=$!
    fi
    local status=0
    timeout "$timeout_s" "$@" > "$log" 2>&1 || status=$?
    if [ -n "$sampler" ]; then
        kill "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        echo "$(sort -n "$memlog" | tail -n 1) MiB" > "$work/peak"
    fi
    if [ "$status" -ne 0 ]; then
        echo "FAILED (exit $status: $(grep -v '^ *$' "$log" | tail -n 1 | cut -c1-160))"
    else
        grep ' params ' "$log" | tail -n 1 || true
    fi
    cat "$log" >> "$work/all.log"
}

{
    echo "# Training-step measurements ($device)"
    echo
    echo "- date: $stamp; commit: $commit; $machine"
    echo "- command: $command_line"
    echo "- binaries: $plain (burn without fusion/autotune), $fused (\`--features fusion\`)"
    if [ "$device" = cpu ]; then
        echo "- on the CPU both builds run the same code (fusion and autotuning change only the CUDA backend): their differences are the machine's noise"
    fi
    echo
    echo "## $preset, $precision_name, $steps timed steps (their median) after $warmup untimed"
    echo
    echo "| fusion + autotune | micro-batch | step | tokens/s | model TFLOP/s | MFU vs $peak_tflops TFLOP/s | peak memory | matrix-product rate the run measured |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$out"

for build in off on; do
    if [ "$build" = off ]; then bench=$plain; else bench=$fused; fi
    for batch in $batches; do
        # shellcheck disable=SC2086
        line=$(run_bench "$bench" --device "$device" $precision_flag --batch "$batch" \
            --warmup "$warmup" --steps "$steps" "$preset")
        echo "fusion $build, batch $batch: $line" >&2
        case "$line" in
            FAILED*) echo "| $build | $batch | $line | | | | | |" >> "$out" ;;
            *)
                # "... step 1.087 s  7539 tokens/s  44100.00 model GFLOP/s (...)  peak RSS 900 MiB  loss ..."
                step=$(sed -E 's/.* step ([0-9.]+) s .*/\1/' <<< "$line")
                rate=$(sed -E 's/.* ([0-9]+) tokens\/s .*/\1/' <<< "$line")
                gflops=$(sed -E 's/.* ([0-9.]+) model GFLOP\/s.*/\1/' <<< "$line")
                rss=$(sed -E 's/.*peak RSS ([0-9]+ MiB).*/\1/' <<< "$line")
                memory=$(cat "$work/peak")
                memory=${memory:-"$rss (host RSS)"}
                # "device cuda:0 (Bf16), rayon threads default, matmul 8192^3: 650000.0 GFLOP/s"
                matmul=$(sed -n -E 's/^device .* matmul ([0-9]+)\^3: ([0-9.]+) GFLOP\/s.*/\2 \1/p' "$work/run.log")
                awk -v build="$build" -v batch="$batch" -v step="$step" -v rate="$rate" \
                    -v gflops="$gflops" -v peak="$peak_tflops" -v memory="$memory" \
                    -v matmul="$matmul" -v cpu="$([ "$device" = cpu ] && echo 1 || echo 0)" 'BEGIN {
                        split(matmul, m, " ")
                        mfu = cpu ? "n/a (CPU)" : sprintf("%.1f%%", 100 * gflops / 1000 / peak)
                        printf "| %s | %s | %.3f s | %d | %.3f | %s | %s | %.0f GFLOP/s (%d^3) |\n",
                            build, batch, step, rate, gflops / 1000, mfu, memory, m[1], m[2]
                    }' >> "$out"
                ;;
        esac
    done
done

# Precision check: f32 writes the initial weights, the second run starts from them.
check_bench=$fused
reference_precision=f32
compared_precision=bf16
if [ "$device" = cpu ]; then compared_precision="f32 (the CPU has no bf16 path: checks the script only)"; fi
f32_line=$(run_bench "$check_bench" --device "$device" --batch 8 --warmup 0 --steps "$check_steps" \
    --save-init "$work/init.safetensors" --losses "$work/f32.txt" "$check_preset")
# shellcheck disable=SC2086
low_line=$(run_bench "$check_bench" --device "$device" $precision_flag --batch 8 --warmup 0 \
    --steps "$check_steps" --init-from "$work/init.safetensors" --losses "$work/low.txt" "$check_preset")
{
    echo
    echo "## $compared_precision against $reference_precision: $check_preset, $check_steps steps of one fixed batch of 8, the same initial weights"
    echo
    case "$f32_line$low_line" in
        *FAILED*) echo "failed: $reference_precision: $f32_line; $compared_precision: $low_line" ;;
        *)
            # Largest relative difference of the per-step losses, where it happened, and the
            # losses at the first and last steps.
            # Lines "STEP F32_LOSS STEP COMPARED_LOSS"; a loss that is not a finite number (NaN,
            # inf) fails the check.
            paste -d ' ' "$work/f32.txt" "$work/low.txt" | awk '
                $2 !~ /^-?[0-9]/ || $4 !~ /^-?[0-9]/ { bad++; next }
                { d = ($4 - $2) / $2; if (d < 0) d = -d; if (d > worst) { worst = d; at = $1 } }
                NR == 1 { first = $2 " / " $4 }
                { last = $2 " / " $4; steps = NR }
                END {
                    printf "| steps | loss at step 1 (reference / compared) | at the last step | largest relative difference | not finite | within 2%% |\n"
                    printf "|---:|---|---|---:|---:|---|\n"
                    printf "| %d | %s | %s | %.3f%% (step %d) | %d | %s |\n",
                        steps, first, last, 100 * worst, at, bad, (worst <= 0.02 && bad == 0 ? "yes" : "NO")
                }'
            ;;
    esac
} >> "$out"
cp "$work/all.log" "$final.log.tmp" && mv "$final.log.tmp" "${final%.md}.log"
cp "$out" "$final.tmp" && mv "$final.tmp" "$final"
echo "wrote $final (and the benchmarks' own output, ${final%.md}.log)" >&2
