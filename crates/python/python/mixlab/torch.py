"""mixlab for PyTorch trainers: a step's per-domain feedback from per-token losses.

Under `torchrun`, every rank trains on its share of the step's sequences, computes
`domain_feedback` from its own per-token losses, and gets back the sums and counts of all ranks
(one all-reduce of a 3 x K float64 tensor), so every rank's `mixlab.Mixer` observes the same
feedback and takes the same decision, with no rank 0 special case.
"""

import torch
import torch.distributed as dist

__all__ = ["domain_feedback"]


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
