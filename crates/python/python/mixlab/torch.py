"""mixlab for PyTorch trainers: the training steps as a dataset, and a step's per-domain feedback.

`MixedDataset` is an `IterableDataset` over a prepared mixlab dataset: it yields this rank's
share of each training step, drawn with the mixer's weights for that step, exactly as mixlab's
trainer draws them, also from DataLoader worker processes. `domain_feedback` turns per-token
losses into the feedback `mixlab.Mixer.observe` takes; under `torchrun` the sums and counts of
all ranks are all-reduced (one 4 x K float64 tensor), so every rank's mixer observes the same
feedback and takes the same decision, with no rank 0 special case.
"""

import os
import time
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.distributed as dist

from .data import DataStream

__all__ = ["Batch", "MixedDataset", "domain_feedback"]

# Rows of published weights kept for the workers: a worker falls behind the trainer by at most
# its share of the loader's prefetch, far fewer steps than this.
_RING = 1024


class Batch(NamedTuple):
    """One training step's rows for this rank, as `MixedDataset` yields them."""

    step: int
    """The training step (1-based) these rows belong to."""
    input_ids: torch.Tensor
    """int64 [micro_batches / world_size, micro_batch_size, seq_len]: the model's inputs."""
    labels: torch.Tensor
    """int64, same shape: the next tokens (`input_ids` shifted by one)."""
    domain_ids: torch.Tensor
    """int64 [micro_batches / world_size, micro_batch_size]: each sequence's domain index."""


class MixedDataset(torch.utils.data.IterableDataset):
    """A prepared mixlab dataset as an `IterableDataset` of training steps drawn with online weights.

    The arguments are `mixlab.DataStream`'s, plus `steps` (the iteration ends after that step;
    default: never). Each item is a `Batch`: this rank's rows of one step. Use it with
    `DataLoader(dataset, batch_size=None, num_workers=N)`; every step is drawn with the weights
    the trainer published for it, so the rows are exactly those of `DataStream.next_step` given
    the same weights, whatever the number of workers:

        dataset.publish(1, mixer.weights())
        for batch in loader:
            ...                                   # train on batch.input_ids / batch.labels
            mixer.observe(batch.step, **domain_feedback(loss, batch.domain_ids, k))
            dataset.publish(batch.step + 1, mixer.weights())

    With N workers, worker w materialises the (w + 1)-th, (w + 1 + N)-th, ... step of the
    iteration (the DataLoader's round-robin order) and follows every other step without
    reading its rows, so each worker's samplers stand where the trainer's would. The published
    weights live in shared memory; a worker waits until the weights of its next step are
    published, so with online mixing a worker can prepare step t + 1 only after step t's
    feedback: its reading overlaps the trainer's work between `publish` and the next batch, not
    the model's step (that would need a lagged mixture, which the paper does not use).

    Resume: `state_dict()` (taken after publishing the next step's weights) holds the stream's
    position and that step's weights; a new dataset over the same data and batch shape given
    `load_state_dict(state)` before its loader starts yields that step next.
    """

    def __init__(self, dataset, seed, micro_batches, micro_batch_size, granularity="micro-batch",
                 warmup_granularity=None, warmup_steps=0, rank=0, world_size=1, steps=None):
        super().__init__()
        self._args = dict(dataset=str(dataset), seed=seed, micro_batches=micro_batches,
                          micro_batch_size=micro_batch_size, granularity=granularity,
                          warmup_granularity=warmup_granularity, warmup_steps=warmup_steps,
                          rank=rank, world_size=world_size)
        if steps is not None and steps < 0:
            raise ValueError(f"steps: must be non-negative, found {steps}")
        self.steps = steps
        # The trainer's view of the stream: it stands after every step before the last published
        # one (whose rows the trainer may not have drawn yet), and an iteration starts there.
        self._shadow = DataStream(**self._args)
        self._start_state = None
        self.domains = self._shadow.domains
        self.seq_len = self._shadow.seq_len
        self.vocab_size = self._shadow.vocab_size
        self.token_counts = self._shadow.token_counts
        k = len(self.domains)
        # Row step % _RING: [step, weights...]; control: [last published step, closed].
        self._board = torch.zeros(_RING, k + 1, dtype=torch.float64).share_memory_()
        self._control = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._pending = None

    @property
    def published(self):
        """The last step whose weights were published (0 before the first)."""
        return int(self._control[0])

    def publish(self, step, weights):
        """Publishes the weights step `step` is drawn with (one per domain, e.g. `mixer.weights()`).

        Steps are published in order, once each; publishing the last published step again with
        the same weights does nothing (so a resumed trainer can publish its next step
        unconditionally). Call it before the loader needs that step."""
        weights = [float(w) for w in weights]
        last = self.published
        if step == last and last > 0:
            if weights != self._pending:
                raise ValueError(f"publish: step {step} was already published with other weights "
                                 f"({self._pending}, now {weights})")
            return
        if step != last + 1:
            raise ValueError(f"publish: step {step} after step {last}; steps are published in "
                             f"order, once each")
        if len(weights) != len(self.domains):
            raise ValueError(f"publish: {len(weights)} weights for {len(self.domains)} domains")
        self._check_weights(weights, "publish")
        if self._pending is not None:
            # Step `last` is now behind the trainer: the shadow follows it.
            self._shadow.skip_step(self._pending)
        row = self._board[step % _RING]
        row[1:] = torch.tensor(weights, dtype=torch.float64)
        row[0] = float(step)
        self._pending = weights
        self._control[0] = step

    def _check_weights(self, weights, what):
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"{what}: weights {weights} are not a distribution "
                             f"(finite, non-negative, positive sum)")

    def close(self):
        """Ends every worker's iteration at its next wait (e.g. before leaving a loop early)."""
        self._control[1] = 1

    def state_dict(self):
        """The position of the stream: the steps drawn before the last published one, and that
        step's weights. Take it after `publish(step + 1, ...)`, when `step` is the last trained."""
        return {"format": "mixlab.torch.MixedDataset/1", "stream": self._shadow.state_dict(),
                "published": self.published, "weights": self._pending}

    def load_state_dict(self, state):
        """Restores a `state_dict()` of a dataset over the same data, seed and batch shape; call
        it before the loader starts."""
        if not isinstance(state, dict) or state.get("format") != "mixlab.torch.MixedDataset/1":
            raise ValueError("state: not a mixlab.torch.MixedDataset state")
        published, weights = state["published"], state["weights"]
        stream = DataStream(**self._args)
        stream.load_state_dict(state["stream"])
        if (weights is None) != (published == stream.step) or (
                weights is not None and published != stream.step + 1):
            raise ValueError(f"state: published step {published} does not follow the stream's "
                             f"step {stream.step}")
        if weights is not None:
            if len(weights) != len(self.domains):
                raise ValueError(f"state: {len(weights)} weights for {len(self.domains)} domains")
            self._check_weights(weights, "state")
            row = self._board[published % _RING]
            row[1:] = torch.tensor(weights, dtype=torch.float64)
            row[0] = float(published)
        self._shadow = stream
        self._pending = None if weights is None else [float(w) for w in weights]
        self._control[0] = published
        self._control[1] = 0

    def __getstate__(self):
        # Worker processes started with spawn get the shadow's position, not the Rust object.
        state = self.__dict__.copy()
        state["_start_state"] = self._shadow.state_dict()
        state["_shadow"] = None
        return state

    def _weights_for(self, step, in_worker, parent):
        pause = 5e-5
        while int(self._control[0]) < step:
            if not in_worker:
                raise RuntimeError(f"step {step}: no weights published; call "
                                   f"dataset.publish({step}, mixer.weights()) before drawing it")
            if int(self._control[1]):
                return None
            if os.getppid() != parent:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 2e-3)
        row = self._board[step % _RING].clone()
        if int(row[0]) != step:
            raise RuntimeError(f"step {step}: its weights were overwritten; a DataLoader worker "
                               f"fell more than {_RING} steps behind the trainer")
        return row[1:].tolist()

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        workers, me = (1, 0) if info is None else (info.num_workers, info.id)
        stream = DataStream(**self._args)
        start = self._shadow.state_dict() if self._shadow is not None else self._start_state
        stream.load_state_dict(start)
        parent = os.getppid()
        first = stream.step + 1
        step = first - 1
        while self.steps is None or step < self.steps:
            step += 1
            weights = self._weights_for(step, info is not None, parent)
            if weights is None:
                return
            # The DataLoader takes items from its workers in turn, the first from worker 0.
            if (step - first) % workers != me:
                stream.skip_step(weights)
                continue
            tokens, domains = stream.next_step(weights)
            rows = torch.from_numpy(tokens.astype(np.int64))
            yield Batch(step, rows[..., :-1], rows[..., 1:], torch.from_numpy(domains))


def domain_feedback(token_loss, domain_ids, num_domains, mask=None, group=None):
    """The per-domain feedback of one optimizer step, as `mixlab.Mixer.observe` takes it.

    token_loss: [sequences, tokens] per-token cross-entropy (`reduction="none"`), any float type;
    domain_ids: [sequences], the domain index of each sequence (the mixer's domain order);
    num_domains: the mixer's number of domains; mask: [sequences, tokens], nonzero where a token
    bears loss (default: every token); group: the process group to all-reduce over (default:
    the world, when torch.distributed is initialised; no communication otherwise).

    Each sequence with at least one loss-bearing token is one loss term, its mean token loss,
    as mixlab's trainer records a step with `granularity = "sequence"`. Returns a dict of
    per-domain lists: `loss_sum` (sum of the terms), `loss_count` (terms), `sequences`,
    `tokens`; pass it as `mixer.observe(step, **feedback)`.
    """
    if token_loss.dim() != 2:
        raise ValueError(f"token_loss: expected [sequences, tokens], found shape {tuple(token_loss.shape)}")
    ids = torch.as_tensor(domain_ids, device=token_loss.device).to(torch.int64).reshape(-1)
    if ids.numel() != token_loss.shape[0]:
        raise ValueError(f"domain_ids: {ids.numel()} ids for {token_loss.shape[0]} sequences")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_domains):
        raise ValueError(f"domain_ids: values must lie in 0..{num_domains - 1}, found {int(ids.min())}..{int(ids.max())}")
    loss = token_loss.detach().to(torch.float64)
    if mask is None:
        weight = torch.ones_like(loss)
    else:
        if mask.shape != token_loss.shape:
            raise ValueError(f"mask: shape {tuple(mask.shape)} differs from token_loss's {tuple(token_loss.shape)}")
        weight = (mask.detach() != 0).to(torch.float64)
    tokens = weight.sum(dim=1)
    bearing = (tokens > 0).to(torch.float64)
    means = (loss * weight).sum(dim=1) / tokens.clamp(min=1.0)
    if not torch.isfinite(means).all():
        raise ValueError("token_loss: a loss-bearing token's loss is not finite")
    stats = torch.zeros(4, num_domains, dtype=torch.float64, device=loss.device)
    stats[0].index_add_(0, ids, means * bearing)
    stats[1].index_add_(0, ids, bearing)
    stats[2].index_add_(0, ids, torch.ones_like(means))
    stats[3].index_add_(0, ids, tokens)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
    stats = stats.cpu()
    # Counts are sums of ones: exact in float64 far beyond any step's size.
    return {
        "loss_sum": stats[0].tolist(),
        "loss_count": [int(c) for c in stats[1].tolist()],
        "sequences": [int(c) for c in stats[2].tolist()],
        "tokens": [int(c) for c in stats[3].tolist()],
    }
