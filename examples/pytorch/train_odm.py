#!/usr/bin/env python3
"""Online data mixing in a PyTorch trainer: HF GPT-NeoX on a prepared mixlab dataset, with ODM.

    torchrun --nproc_per_node 2 examples/pytorch/train_odm.py --dataset DIR --out DIR [--steps 100]

Each rank trains its share of every step's micro-batches (DistributedDataParallel; gloo on CPU,
NCCL on GPUs), draws them through `mixlab.torch.MixedDataset` with the weights its own
`mixlab.Mixer` published, and feeds the mixer the step's per-domain losses of all ranks
(`mixlab.torch.domain_feedback` all-reduces them), so every rank decides alike and no rank is
special. Started again with the same command after a stop (Ctrl-C, a kill, a lost node), it
resumes from the last checkpoint and continues exactly as if never stopped: the model, AdamW,
the learning-rate schedule, the mixer and the data stream are all in the checkpoint.

DIR is a dataset made by `experiments prepare-data` (or by any `experiments train` run on the
synthetic corpus, under its `data/`). Writes into --out: `checkpoint.pt` (every
--checkpoint-every steps and at the end, written whole or not at all) and `steps-rank<R>.jsonl`
(one line per step: the loss, gradient norm, learning rate, this rank's mixer weights for the
step and where the step's time went). The model has the shapes of mixlab's `tiny` or `small`
preset with the dataset's vocabulary and sequence length.

Needs torch, transformers and the mixlab package (`pip install ./crates/python[torch]`).
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

import mixlab
import mixlab.torch

# mixlab's presets (crates/model/src/config.rs): layers, d_model, heads; Pythia-shaped.
PRESETS = {"tiny": (4, 128, 4), "small": (4, 256, 4)}

# The paper's ODM (Algorithm 1: EXP3 with the decaying exploration rate, the smoothed loss as
# reward) with its warm-up of 1% of the steps. It starts from each domain's share of the tokens
# (temperature 1), which any dataset has; on The Pile the paper starts from the Pile's weights,
# `initial_weights = "tpw"`. `experiments list-mixers` lists every key.
def default_mixer(steps):
    return (f'kind = "odm"\nrule = "paper"\nwarmup_steps = {steps // 100}\n'
            f'initial_weights = {{ temperature = 1.0 }}\n')

# What a checkpoint must agree on with the command line to continue the same run.
SAME_RUN = ("dataset", "preset", "seed", "micro_batches", "micro_batch_size", "steps", "lr",
            "mixer", "granularity")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, type=pathlib.Path,
                        help="a prepared mixlab dataset (manifest.json and Parquet shards)")
    parser.add_argument("--out", required=True, type=pathlib.Path,
                        help="the run's directory: checkpoint and per-rank step logs")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps in all")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="model shapes of this mixlab preset")
    parser.add_argument("--seed", type=int, default=42,
                        help="the run seed: model initialisation and mixlab's data streams")
    parser.add_argument("--micro-batches", type=int, default=8,
                        help="micro-batches per step over all ranks (the paper's G domain draws)")
    parser.add_argument("--micro-batch-size", type=int, default=4, help="sequences per micro-batch")
    parser.add_argument("--granularity", choices=["micro-batch", "sequence"], default="micro-batch",
                        help="one domain per micro-batch (the paper) or per sequence")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="peak learning rate (linear warm-up over 10%%, cosine to 10%%)")
    parser.add_argument("--mixer", default=None,
                        help="the [mixer] table as TOML text, or a file holding it "
                             "(default: the paper's ODM, warm-up 1%% of --steps)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes per rank")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per rank (1: the same numbers on every CPU run)")
    parser.add_argument("--checkpoint-every", type=int, default=10, help="steps between checkpoints")
    args = parser.parse_args()
    if args.mixer is None:
        args.mixer = default_mixer(args.steps)
    elif os.path.isfile(args.mixer):
        args.mixer = pathlib.Path(args.mixer).read_text()
    for name in ("steps", "micro_batches", "micro_batch_size", "checkpoint_every", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def build_model(preset, vocab_size, seq_len):
    import transformers

    layers, d, heads = PRESETS[preset]
    config = transformers.GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * d, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10_000,
        max_position_embeddings=seq_len, layer_norm_eps=1e-5, use_parallel_residual=True,
        tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0)
    return transformers.GPTNeoXForCausalLM(config)


def lr_lambda(total):
    warmup = max(1, round(0.1 * total))

    def factor(done):
        # LambdaLR calls it with the number of finished steps; step done + 1 is next.
        step = done + 1
        if step <= warmup:
            return step / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def write_whole(path, write):
    """Writes `path` through a temporary file, fsync and rename: whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_log(path, step):
    """Keeps a step log's lines up to `step` (a resumed run writes the later ones again)."""
    if not path.exists():
        return
    keep = []
    for number, line in enumerate(path.read_text().splitlines(keepends=True), start=1):
        if not line.endswith("\n"):
            break  # the line a kill cut short: its step is written again
        try:
            logged = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}:{number}: not a step line ({e})")
        if logged <= step:
            keep.append(line)
    write_whole(path, lambda f: f.write("".join(keep).encode()))


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                          if torch.cuda.is_available() else "cpu")
    if args.micro_batches % world:
        raise SystemExit(f"--micro-batches {args.micro_batches} must be a multiple of the "
                         f"{world} ranks")
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = args.out / "checkpoint.pt"
    log_path = args.out / f"steps-rank{rank}.jsonl"

    dataset = mixlab.torch.MixedDataset(
        args.dataset, args.seed, args.micro_batches, args.micro_batch_size,
        granularity=args.granularity, rank=rank, world_size=world, steps=args.steps)
    mixer = mixlab.Mixer(args.mixer, dataset.domains, token_counts=dataset.token_counts,
                         vocab_size=dataset.vocab_size)
    torch.manual_seed(args.seed)
    model = build_model(args.preset, dataset.vocab_size, dataset.seq_len).to(device)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(args.steps))

    done = 0
    run_keys = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()
                if k in SAME_RUN}
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        differ = {k: (state["args"].get(k), v) for k, v in run_keys.items()
                  if state["args"].get(k) != v}
        if differ:
            raise SystemExit(f"{checkpoint_path} belongs to another run: "
                             + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in differ.items()))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        mixer.load_state_dict(state["mixer"])
        dataset.load_state_dict(state["dataset"])
        done = state["step"]
        if rank == 0:
            print(f"resuming from {checkpoint_path} at step {done}", flush=True)
    cut_log(log_path, done)
    ddp = torch.nn.parallel.DistributedDataParallel(model) if distributed else model

    def save(step):
        if rank == 0:
            state = {"step": step, "args": run_keys, "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                     "mixer": mixer.state_dict(), "dataset": dataset.state_dict()}
            write_whole(checkpoint_path, lambda f: torch.save(state, f))
        if distributed:
            dist.barrier()

    # The next step's weights; a resumed run publishes the checkpoint's own again (a no-op).
    dataset.publish(done + 1, mixer.weights())
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=args.workers)
    log = open(log_path, "a")
    timings = []
    waited = time.perf_counter()
    for batch in loader:
        step = batch.step
        assert step == done + 1, f"the loader gave step {step} after step {done}"
        started = time.perf_counter()
        weights = mixer.weights()
        local = batch.input_ids.shape[0]
        token_losses = []
        loss_sum = torch.zeros((), dtype=torch.float64)
        for m in range(local):
            # Gradients are averaged across ranks once per step, after the last micro-batch.
            sync = contextlib.nullcontext() if not distributed or m == local - 1 else ddp.no_sync()
            with sync:
                logits = ddp(batch.input_ids[m].to(device)).logits
                token_loss = F.cross_entropy(logits.transpose(1, 2), batch.labels[m].to(device),
                                             reduction="none")
                loss = token_loss.mean()
                (loss / local).backward()
            token_losses.append(token_loss.detach())
            loss_sum += loss.detach().double().cpu()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if distributed:
            dist.all_reduce(loss_sum)
        trained = time.perf_counter()
        feedback = mixlab.torch.domain_feedback(torch.cat(token_losses), batch.domain_ids.reshape(-1),
                                                len(dataset.domains))
        mixer.observe(step, **feedback)
        # Published before the checkpoint, so a resume draws exactly the next step.
        dataset.publish(step + 1, mixer.weights())
        mixed = time.perf_counter()
        done = step
        timings.append((started - waited, trained - started, mixed - trained))
        log.write(json.dumps({
            "step": step, "loss": loss_sum.item() / args.micro_batches,
            "grad_norm": grad_norm.item(), "lr": lr,
            "weights": dict(zip(dataset.domains, weights)),
            "domains": batch.domain_ids.tolist(),
            "seconds": {"data": started - waited, "step": trained - started,
                        "mixing": mixed - trained},
        }) + "\n")
        log.flush()
        if step % args.checkpoint_every == 0 or step == args.steps:
            save(step)
        waited = time.perf_counter()
    log.close()
    if rank == 0:
        print(f"trained {done} steps; checkpoint {checkpoint_path}", flush=True)
        if timings:
            data, model_step, mixing = (statistics.median(t) for t in zip(*timings))
            print(f"median per step over {len(timings)} steps: model step {model_step * 1e3:.1f} ms, "
                  f"waiting for data {data * 1e3:.2f} ms, mixing (feedback, observe, publish) "
                  f"{mixing * 1e3:.2f} ms = {100 * (data + mixing) / model_step:.2f}% of the step",
                  flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
