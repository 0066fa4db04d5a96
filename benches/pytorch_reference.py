#!/usr/bin/env python3
"""Replays a mixlab training run in PyTorch: the outside reference for mixlab's training step.

mixlab's step is forward, mean cross-entropy over the step's tokens (accumulated over its
micro-batches), backward, global-norm clipping, AdamW with decoupled weight decay on matrices
only, and a linear warm-up + cosine learning-rate schedule. This script runs the same step
with the implementations researchers trust (HF transformers' GPTNeoXForCausalLM with eager
attention, torch.optim.AdamW, torch.nn.utils.clip_grad_norm_, torch.optim.lr_scheduler.LambdaLR)
on exactly the batches a mixlab run trained on, from the same initial weights:

    experiments train --config RUN.toml --init-from INIT_DIR --dump-batches batches.npy
    python3 benches/pytorch_reference.py --init INIT_DIR --batches batches.npy \\
        --config RUN_DIR/config.toml --out reference/

`--init` is the run's initial weights (an HF GPT-NeoX directory: `config.json` +
`model.safetensors`, e.g. another run's `final/`); `--batches` the run's batch dump
([steps, micro-batches, sequences, seq_len + 1] token ids, uint32); `--config` the run's
resolved `config.toml` ([optimizer], [schedule] and training.steps are read from it). It
writes `steps.jsonl` (per step: step, loss, grad_norm as clip_grad_norm_ returns it before
clipping, grad_norm_exact the same norm summed in float64, lr) and `final/` (the
trained weights, an HF directory that mixlab also loads) under `--out`. The test
`crates/experiments/tests/pytorch_reference.rs` compares both with the mixlab run.

The loss is unweighted: a run of DoReMi's proxy (`kind = "doremi"`), which weights each
domain's loss, is refused. Needs Python 3.11+ (tomllib), torch, transformers and numpy.
"""

import argparse
import json
import math
import pathlib
import sys
import tomllib


def lr_at(step, total, schedule):
    """mixlab's LrSchedule::lr for 1-based `step` (crates/train/src/schedule.rs)."""
    peak = schedule["peak_lr"]
    # Rust's f64::round rounds halves away from zero; Python's round() would round them to even.
    warmup = math.floor(schedule["warmup_fraction"] * total + 0.5)
    min_lr = peak * schedule["min_lr_ratio"]
    if step <= warmup and warmup > 0:
        return peak * step / warmup
    decay_steps = max(total - warmup, 1)
    progress = min(max((step - warmup) / decay_steps, 0.0), 1.0)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--init", required=True, type=pathlib.Path)
    parser.add_argument("--batches", required=True, type=pathlib.Path)
    parser.add_argument("--config", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    if config.get("mixer", {}).get("kind") == "doremi":
        sys.exit(f"{args.config}: DoReMi weights its loss by domain; this reference replays unweighted runs only")
    optimizer_cfg = config.get("optimizer", {})
    schedule = config.get("schedule", {})
    for field in ("peak_lr", "warmup_fraction", "min_lr_ratio"):
        if field not in schedule:
            sys.exit(f"{args.config}: [schedule] lacks `{field}` (pass the run's resolved config.toml)")
    total = config["training"]["steps"]

    batches = np.load(args.batches)
    if batches.ndim != 4 or batches.dtype != np.uint32:
        sys.exit(f"{args.batches}: expected a [steps, micro-batches, sequences, tokens] uint32 array, found {batches.dtype} {batches.shape}")
    steps, micro_batches, sequences, width = batches.shape
    tokens_per_step = micro_batches * sequences * (width - 1)

    model = transformers.GPTNeoXForCausalLM.from_pretrained(
        args.init, attn_implementation="eager", torch_dtype=torch.float32
    )
    model.train()
    params = list(model.parameters())
    # GPT-NeoX and mixlab decay matrices and embeddings, never biases or LayerNorm parameters.
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": optimizer_cfg.get("weight_decay", 0.1)},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups,
        lr=schedule["peak_lr"],
        betas=(optimizer_cfg.get("beta1", 0.9), optimizer_cfg.get("beta2", 0.95)),
        eps=optimizer_cfg.get("epsilon", 1e-8),
    )
    # LambdaLR multiplies the initial rate by lambda(i) before optimizer step i + 1 (0-based i).
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_at(i + 1, total, schedule) / schedule["peak_lr"]
    )
    clip = optimizer_cfg.get("grad_clip", 1.0)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "steps.jsonl", "w") as log:
        for step in range(steps):
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for m in range(micro_batches):
                block = torch.from_numpy(batches[step, m].astype(np.int64))
                inputs, targets = block[:, :-1], block[:, 1:]
                logits = model(input_ids=inputs).logits
                loss_sum = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
                )
                # Each micro-batch adds its share of the step's mean, so the gradient is exact.
                (loss_sum / tokens_per_step).backward()
                step_loss += loss_sum.item()
            # torch's own norm sums squares in float32; over the 524k entries of a small model's
            # output head it is off the exact value by a few 1e-5, so the exact one is logged too.
            exact = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in params))
            if clip > 0:
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            else:
                grad_norm = float("nan")
            optimizer.step()
            scheduler.step()
            line = {
                "step": step + 1,
                "loss": step_loss / tokens_per_step,
                "grad_norm": grad_norm,
                "grad_norm_exact": exact,
                "lr": lr,
            }
            log.write(json.dumps(line) + "\n")
    model.save_pretrained(args.out / "final", safe_serialization=True)
    print(f"replayed {steps} steps of {micro_batches} x {sequences} x {width - 1} tokens; wrote {args.out}")


if __name__ == "__main__":
    main()
