"""Zero-shot recommendation by intervention (Eq. 8 of the paper), through ``pyro.poutine.do``.

In an unseen target domain the confounders are intervened on: ``do(D = 0)`` and every offset set to 0
(``eps_v = eps_z = eps_u = 0``), so ``V_j = f_pop(F_j) + m_j`` and ``U_i = f_seq(0, H_i)``; the popularity factors
F_j come from the target's own counts of the previous interval (online data, allowed). Scores are the model's
returned logits, never the trace's total log-probability: under ``do`` the trace's ``D`` node still holds a fresh
draw from the prior.

``BackdoorScorer`` averages the softmax over draws of D from its prior instead (the back-door adjustment of Eq. 8),
and, for a guide with a posterior, over posterior draws of the shared latent sites.

Shape legend: K = domains, J = items, R = windows, L = positions, A = target positions, B = embedding size,
S = draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.models.prerec import EPS_U, EPS_V, EPS_V_SHARED, EPS_Z, D, PreRecModel

from .scoring import ModelScorer, eval_mode, latent_dict, model_logits


def target_model(model: PreRecModel, target: MultiDomainData, item_text: torch.Tensor) -> PreRecModel:
    """Point a pre-trained model at a target's domains, users and items (the nets are kept, not copied)."""
    model.set_catalogue(n_domains=len(target.domains), n_users=target.n_users, item_text=item_text,
                        item_key=torch.as_tensor(target.item_keys()[0]))
    return model


def zero_interventions(model: PreRecModel, batch: PreRecBatch) -> dict[str, Tensor]:
    """do(D = 0, eps_v = 0, eps_z = 0, eps_u = 0) for the sites this model has, and eps_v_shared at its prior
    mean 0 (an item the sources never saw; ``InterventionScorer``'s ``item_offsets`` supplies the learned rows)."""
    hidden, device = model.config.hidden_dim, batch.items.device
    values = {D: torch.zeros(model.n_domains, hidden, device=device),  # [K, B]
              EPS_V_SHARED: torch.zeros(model.n_item_keys, hidden, device=device),  # [I, B]
              EPS_V: torch.zeros(model.n_items, hidden, device=device),  # [J, B]
              EPS_Z: torch.zeros(model.n_items, hidden, device=device),  # [J, B]
              EPS_U: torch.zeros(len(batch.user_index), hidden, device=device)}  # [U, B]
    return values


def checked_item_offsets(model: PreRecModel, item_offsets: dict[str, Tensor] | None) -> dict[str, Tensor]:
    """Tables that replace the zeros of the item sites: ``eps_v`` / ``eps_z`` ``[J, B]`` and ``eps_v_shared``
    ``[I, B]`` of the target's items."""
    rows = {EPS_V: model.n_items, EPS_Z: model.n_items, EPS_V_SHARED: model.n_item_keys}
    unknown = set(item_offsets or {}) - set(rows)
    if unknown:
        raise ValueError(f"item_offsets may set {sorted(rows)} only, got {sorted(unknown)}")
    for site, table in (item_offsets or {}).items():
        shape = (rows[site], model.config.hidden_dim)
        if tuple(table.shape) != shape:
            raise ValueError(f"item_offsets[{site!r}] must have shape {shape} (the target's items x B), got "
                             f"{tuple(table.shape)}")
    return dict(item_offsets or {})


def logits_under(model: PreRecModel, values: dict[str, Tensor], batch: PreRecBatch, at_targets: bool = False) -> Tensor:
    """The logits of the model under ``do(values)``: [R, L, J], or [A, J] ``at_targets``."""
    return model_logits(model, batch, latent_dict(model, batch, do=values), at_targets)


class InterventionScorer(ModelScorer):
    """Zero-shot PreRec scores: the logits of the intervened model do(D = 0, eps = 0).

    ``item_offsets`` optionally replaces the zeros of ``eps_v`` / ``eps_z`` / ``eps_v_shared`` with given target
    tables (``inference.zero_shot``: the learned shared offsets of a model with ``shared_item_offsets``, or the
    post-hoc mean of source offsets, an extension beyond Eq. 8 that is off by default)."""

    def __init__(self, model: PreRecModel, name: str = "PreRec", item_offsets: dict[str, Tensor] | None = None):
        self.model, self.name, self.item_offsets = model, name, checked_item_offsets(model, item_offsets)

    @torch.no_grad()
    def scores(self, batch: PreRecBatch, at_targets: bool) -> Tensor:
        with eval_mode(self.model):
            return logits_under(self.model, self._interventions(batch), batch, at_targets)  # [R, L, J] or [A, J]

    @torch.no_grad()
    def score_targets_by_sequence(self, batch: PreRecBatch) -> tuple[Tensor, Tensor]:
        """``score_targets`` and the sequence model's term of it, in one pass ([A, J] each;
        ``PreRecModel.target_logits_and_sequence_term``)."""
        latent = latent_dict(self.model, batch, do=self._interventions(batch))
        with eval_mode(self.model):
            return self.model.target_logits_and_sequence_term(batch, latent)

    def fixed_item_side(self):
        """A block over which the catalogue's item side is built once (``PreRecModel.fixed_item_side``): the
        interventions and ``item_offsets`` are the same for every batch."""
        return self.model.fixed_item_side()

    def _interventions(self, batch: PreRecBatch) -> dict[str, Tensor]:
        return {**zero_interventions(self.model, batch), **self.item_offsets}


class BackdoorScorer(ModelScorer):
    """Back-door adjustment: log of the softmax averaged over ``n_samples`` draws of D (offsets at 0, or the given
    ``item_offsets`` as in ``InterventionScorer``). The draws come from the prior p(D), or are the rows of
    ``domain_draws`` [n_samples, B] (e.g. draws of the sources' D_k from a run's posterior,
    ``inference.pretrained.source_domain_draws``): draw s sets every domain's D to row s."""

    def __init__(self, model: PreRecModel, n_samples: int, seed: int = 0, name: str = "PreRec (back-door)",
                 item_offsets: dict[str, Tensor] | None = None, domain_draws: Tensor | None = None):
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if domain_draws is not None and tuple(domain_draws.shape) != (n_samples, model.config.hidden_dim):
            raise ValueError(f"domain_draws must have shape {(n_samples, model.config.hidden_dim)} (n_samples x B), "
                             f"got {tuple(domain_draws.shape)}")
        self.model, self.n_samples, self.seed, self.name = model, n_samples, seed, name
        self.item_offsets = checked_item_offsets(model, item_offsets)
        self.domain_draws = domain_draws

    @torch.no_grad()
    def scores(self, batch: PreRecBatch, at_targets: bool) -> Tensor:
        values = zero_interventions(self.model, batch)
        values.update(self.item_offsets)
        prior = self.model.prior(D)
        log_probs = []
        with eval_mode(self.model), torch.random.fork_rng(devices=[]):  # seeded; the caller's RNG is left as it was
            torch.manual_seed(self.seed)
            for draw in range(self.n_samples):
                if self.domain_draws is None:
                    values[D] = prior.sample((self.model.n_domains,))  # [K, B]
                else:
                    values[D] = self.domain_draws[draw].expand(self.model.n_domains, -1)  # [K, B]
                log_probs.append(torch.log_softmax(logits_under(self.model, values, batch, at_targets), dim=-1))
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(self.n_samples)  # [R, L, J] or [A, J]
