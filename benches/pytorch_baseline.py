#!/usr/bin/env python3
"""PyTorch side of mixlab's CPU training benchmark: the same GPT-NeoX shapes, the same step.

Builds HF transformers' GPTNeoXForCausalLM with exactly the shapes of mixlab's model presets
(`experiments model-info --preset NAME` prints them; the parameter counts printed here must equal
mixlab's) and times the training step mixlab's `cargo bench -p mixlab-model --bench train_step`
times: forward on [batch, seq] tokens, mean cross-entropy on the next tokens, backward,
global-norm clipping at 1.0, AdamW (beta2 0.95, eps 1e-8, weight decay 0.1 on matrices only),
on one fixed random batch. It prints one line per preset with the median step's tokens/s.

    python3 benches/pytorch_baseline.py [--threads 2] [--batch 8] [--steps 10] [tiny small]

Needs `torch` and `transformers` (pip). `just bench` runs it when both are importable.
"""

import argparse
import statistics
import time

# mixlab's presets (crates/model/src/config.rs): vocab, layers, d_model, heads, seq. Every one
# is Pythia-shaped: MLP 4d, rotary on 25% of each head, base 10,000, LayerNorm eps 1e-5,
# parallel residual, untied embeddings.
PRESETS = {
    "tiny": (4096, 4, 128, 4, 128),
    "small": (8192, 4, 256, 4, 256),
}

# The parameter counts mixlab reports for the same presets (experiments model-info).
MIXLAB_PARAMS = {"tiny": 1_841_920, "small": 7_353_856}


def build(preset, torch, transformers, attn):
    vocab, layers, d, heads, seq = PRESETS[preset]
    config = transformers.GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=d,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * d,
        hidden_act="gelu",
        rotary_pct=0.25,
        rotary_emb_base=10_000,
        max_position_embeddings=seq,
        layer_norm_eps=1e-5,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
    )
    config._attn_implementation = attn
    model = transformers.GPTNeoXForCausalLM(config)
    model.train()
    return model, vocab, seq


def bench(preset, args, torch, transformers):
    torch.manual_seed(0)
    model, vocab, seq = build(preset, torch, transformers, args.attn)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-4,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    tokens = torch.randint(0, vocab, (args.batch, seq + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        losses.append(loss.item())
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    expected = MIXLAB_PARAMS[preset]
    check = "" if params == expected else f" (mixlab's preset has {expected:,}: shapes differ)"
    print(
        f"pytorch {torch.__version__} {preset}: {params:,} params{check}, batch {args.batch} x {seq}, "
        f"{args.threads} threads, attention {args.attn}: median step {median * 1e3:.1f} ms, "
        f"{args.batch * seq / median:,.0f} tokens/s (range {args.batch * seq / max(times):,.0f}-"
        f"{args.batch * seq / min(times):,.0f}), loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("presets", nargs="*", default=["tiny", "small"], choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--attn", default="sdpa", choices=["sdpa", "eager"], help="HF attention implementation"
    )
    args = parser.parse_args()
    try:
        import torch
        import transformers
    except ImportError as error:
        raise SystemExit(f"skipped: {error} (pip install torch transformers)")
    torch.set_num_threads(args.threads)
    for preset in args.presets or ["tiny", "small"]:
        bench(preset, args, torch, transformers)


if __name__ == "__main__":
    main()
