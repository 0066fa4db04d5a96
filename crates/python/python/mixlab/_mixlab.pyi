"""The Rust core of mixlab: every registered mixer behind one class."""

from typing import Any, Mapping, Optional, Sequence, Union

__version__: str

class MixerError(ValueError):
    """A mixer refused its config, feedback or state; the message names the field, domain or step."""

def kinds() -> list[str]:
    """The kinds of mixer this package knows, in registry order."""

class Mixer:
    """A data mixer: the sampling distribution over the domains, updated from per-domain feedback.

    `config` is the `[mixer]` table of a mixlab run config: TOML text (the table's body, or a
    whole run config with a `[mixer]` table) or a dict; `kind` names the mixer. `domains` are
    the domain names in the order of every weight vector; `token_counts` the tokens per domain
    (for temperature-scaled weights); `vocab_size` the tokenizer's (DoReMi's initial excess
    loss ln V).
    """

    def __init__(
        self,
        config: Union[str, Mapping[str, Any]],
        domains: Sequence[str],
        token_counts: Optional[Sequence[int]] = None,
        vocab_size: Optional[int] = None,
    ) -> None: ...
    @property
    def kind(self) -> str:
        """The mixer's kind (`kind` of its config)."""
    @property
    def domains(self) -> list[str]:
        """The domain names, in weight order."""
    def weights(self) -> list[float]:
        """The sampling distribution for the next step (sums to 1)."""
    def policy(self) -> list[float]:
        """The distribution the mixer recommends as its result (Aioli's learned mixture; weights() otherwise)."""
    def loss_weights(self) -> Optional[list[float]]:
        """Per-domain loss weights for the next step (DoReMi's proxy), or None."""
    def needs_validation(self) -> bool:
        """Whether the mixer learns from validation losses (Aioli)."""
    def wants_validation(self, step: int) -> bool:
        """Whether the mixer wants validation losses after `step` (0: before the first step)."""
    def needs_reference_model(self) -> bool:
        """Whether the mixer needs a reference model's excess losses (DoReMi)."""
    def observe(
        self,
        step: int,
        loss_sum: Sequence[float],
        loss_count: Sequence[int],
        sequences: Sequence[int],
        tokens: Sequence[int],
        excess_loss_sum: Optional[Sequence[float]] = None,
        excess_tokens: Optional[Sequence[int]] = None,
    ) -> None:
        """One optimizer step's per-domain feedback (1-based, increasing step), mixlab's StepFeedback.

        loss_sum: the sum of each domain's loss terms, each a mean token cross-entropy (one per
        micro-batch of the domain with homogeneous micro-batches; with per-token losses from
        mixed batches, one term, the domain's mean token loss); loss_count: the number of terms
        (0: not drawn); sequences, tokens: the domain's sequences and loss-bearing tokens;
        excess_loss_sum, excess_tokens: DoReMi's clipped excess over a reference model.
        """
    def observe_validation(self, step: int, losses: Sequence[Optional[float]]) -> None:
        """Per-domain mean validation losses after `step` (None: no validation data), when wants_validation(step)."""
    def state_dict(self) -> dict[str, Any]:
        """The mixer's whole state: the envelope mixlab's checkpoints store."""
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a state_dict() (or a mixlab checkpoint's mixer_state); another kind, domains or config is refused."""
    def internals(self) -> dict[str, Any]:
        """What the mixer logs beside each step (rewards, exploration rate, phases, ...)."""
