"""A Categorical over a domain's items scored on a candidate set, normalised with one fused logsumexp.

``dist.Categorical`` re-normalises its logits on construction (a full pass over [R, L, C]); this distribution keeps
the raw logits and normalises inside ``log_prob`` only (docs/DESIGN.md pitfall 5). With ``candidates=None`` the logits
cover the whole catalogue (value = item index); otherwise ``logits[..., s]`` is the logit of item
``candidates[..., s]`` (sampled softmax) and a value outside the candidate set has log-probability -inf.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution, constraints
from torch import Tensor


class CandidateCategorical(TorchDistribution):
    """Categorical over items with logits on all items (``candidates=None``) or on a candidate set."""

    arg_constraints = {"logits": constraints.real}
    has_enumerate_support = False

    def __init__(self, logits: Tensor, candidates: Tensor | None = None, n_items: int | None = None,
                 validate_args: bool | None = None):
        self.logits = logits  # [..., S]
        self.candidates = candidates  # [..., S] item index per slot, or None
        self.n_items = n_items if n_items is not None else logits.shape[-1]
        super().__init__(batch_shape=logits.shape[:-1], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self.n_items - 1)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        logits = self.logits.expand(batch_shape + self.logits.shape[-1:])
        candidates = None if self.candidates is None else self.candidates.expand(batch_shape + self.logits.shape[-1:])
        return CandidateCategorical(logits, candidates, self.n_items, validate_args=False)

    def _slot(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """The logit slot holding ``value`` and whether it exists. [...], [...]"""
        if self.candidates is None:
            return value.long(), torch.ones_like(value, dtype=torch.bool)
        hit = self.candidates == value.long().unsqueeze(-1)  # [..., S]
        return hit.int().argmax(-1), hit.any(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        slot, found = self._slot(value)
        chosen = self.logits.gather(-1, slot.unsqueeze(-1)).squeeze(-1)  # [...]
        log_prob = chosen - torch.logsumexp(self.logits, dim=-1)  # [...]
        return torch.where(found, log_prob, torch.full_like(log_prob, -torch.inf))

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        probs = torch.softmax(self.logits, dim=-1).expand(shape + self.logits.shape[-1:])
        slot = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1).reshape(shape)
        if self.candidates is None:
            return slot
        return self.candidates.expand(shape + self.logits.shape[-1:]).gather(-1, slot.unsqueeze(-1)).squeeze(-1)
