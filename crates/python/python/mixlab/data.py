"""A prepared mixlab dataset as the stream of training steps mixlab's trainer draws from it."""

import numpy as np

from ._mixlab import _DataStream

__all__ = ["DataStream"]


class DataStream:
    """The training steps of a prepared mixlab dataset (`experiments prepare-data`), drawn
    exactly as mixlab's trainer draws them.

    `seed` is the run seed (the same named data and plan streams as the trainer's); each
    `next_step(weights)` draws a batch plan of `micro_batches` micro-batches of
    `micro_batch_size` sequences from the mixer's `weights` (`granularity`: one domain per
    micro-batch, "micro-batch", or per sequence, "sequence"; `warmup_granularity` for the first
    `warmup_steps` steps), then the sequences from each domain's resumable, shuffled sampler.
    Given the weights the trainer used, the rows equal the ones a mixlab run trained on
    (`train --dump-batches`). With `world_size` ranks, each rank gets its contiguous block of
    micro-batches (the samplers advance over the whole step on every rank).
    """

    def __init__(self, dataset, seed, micro_batches, micro_batch_size, granularity="micro-batch",
                 warmup_granularity=None, warmup_steps=0, rank=0, world_size=1):
        self._inner = _DataStream(str(dataset), seed, micro_batches, micro_batch_size, granularity,
                                  warmup_granularity, warmup_steps, rank, world_size)

    @property
    def domains(self):
        """The dataset's domains, in the order of the weights."""
        return self._inner.domains

    @property
    def seq_len(self):
        """Tokens per sequence; each row holds seq_len + 1 (inputs [:-1], targets [1:])."""
        return self._inner.seq_len

    @property
    def vocab_size(self):
        """The tokenizer's vocabulary size."""
        return self._inner.vocab_size

    @property
    def token_counts(self):
        """Training tokens per domain (a mixer's `token_counts`)."""
        return self._inner.token_counts

    @property
    def step(self):
        """Steps drawn so far."""
        return self._inner.step

    def next_step(self, weights):
        """This rank's rows of the next step, drawn with `weights` (one per domain):
        `tokens`, uint32 [micro-batches, sequences, seq_len + 1], and `domains`, int64
        [micro-batches, sequences], each sequence's domain index."""
        raw, domains, shape = self._inner.next_step([float(w) for w in weights])
        tokens = np.frombuffer(raw, dtype="<u4").reshape(shape)
        return tokens, np.asarray(domains, dtype=np.int64).reshape(shape[:2])

    def skip_step(self, weights):
        """Draws the next step with `weights` as `next_step` does, without reading its rows:
        the stream then stands exactly where `next_step` would have left it."""
        self._inner.skip_step([float(w) for w in weights])

    def state_dict(self):
        """The stream's position (step, sampler cursors, plan generator), to checkpoint."""
        return self._inner.state_dict()

    def load_state_dict(self, state):
        """Restores a state_dict() of a stream over the same dataset, seed and batch shape."""
        self._inner.load_state_dict(state)
