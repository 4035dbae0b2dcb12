"""ZESRec (Ding et al., "Zero-Shot Recommender Systems", 2021) on frozen text vectors, as PreRec's Appendix B uses
it: the hierarchical model whose item and user offsets PreRec's eps_v and eps_u come from.

Generative story, in PreRec's symbols (B = embedding size)::

    eps_v_j ~ N(0, σ_v² I_B)      V_j = f_e(X_j) + eps_v_j          every item row of the sources
    eps_u_i ~ N(0, σ_u² I_B)      U_i = f_seq(H_i) + eps_u_i        every training user of the sources
    R_i*    ~ Categorical(softmax_j(U_i · V_j))                      over the items of the user's domain

f_e is the text head and f_seq a GRU over the history's item embeddings. Training is MAP: the next-item
cross-entropy plus the offsets' Gaussian log-priors, written as explicit terms (not weight decay), in the prior units
of the reference PreRec run (``prior_units``: σ² = 1/λ in total units, 1/(λ·N_obs) per observation) so that ZESRec's
offsets are as stiff as PreRec's eps_v and eps_u. The offsets are fitted in non-centred form (eps = σ·z, z ~ N(0, 1)),
as PreRec fits its stiff sites (docs/DESIGN.md, "Non-centred fitting of stiff sites"). Zero-shot, the offsets are
set to their prior mean 0: ``set_item_text`` (another catalogue) drops them, so a target is scored by f_e and f_seq
alone, and the sources' validation users (who have no fitted offset) are scored with eps_u = 0.

Shape legend: R = sequences, L = positions, J_all = items of every source domain (global rows), U = training users.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch

from .sequential import SequentialConfig, SequentialRecommender


class ZesRec(SequentialRecommender):
    """ZESRec: a GRU user model over text item embeddings with item and user offsets (see the module docstring).

    Args:
        item_text: the sources' frozen text vectors in global row order. [J_all, T]
        n_users: the sources' training users (global user rows ``0 .. n_users - 1``, ``MultiDomainData``'s order).
        item_std, user_std: the offsets' prior standard deviations σ_v and σ_u (``offset_stds``).
        n_obs: the training targets the likelihood sums over (the unit of the log-prior terms in the mean loss).
    """

    label = "ZESRec"

    def __init__(self, item_text: Tensor, n_users: int, item_std: float, user_std: float, n_obs: int,
                 hidden_dim: int = 256, n_layers: int = 2, max_len: int = 64, dropout: float = 0.1):
        if n_users < 1 or n_obs < 1:
            raise ValueError(f"ZESRec needs n_users >= 1 and n_obs >= 1, got {n_users}, {n_obs}")
        if not (item_std > 0 and user_std > 0):
            raise ValueError(f"prior stds must be > 0, got item_std={item_std}, user_std={user_std}")
        config = SequentialConfig(hidden_dim, n_layers, 1, max_len, dropout, sequence_model="gru")
        super().__init__(item_text, config)
        self.item_std, self.user_std, self.n_obs = float(item_std), float(user_std), int(n_obs)
        self.item_z = nn.Parameter(torch.zeros(item_text.shape[0], hidden_dim))  # [J_all, B] eps_v / σ_v
        self.user_z = nn.Parameter(torch.zeros(n_users, hidden_dim))  # [U, B] eps_u / σ_u
        self.offsets_at_prior_mean = False

    def set_item_text(self, item_text: Tensor) -> None:
        """Another catalogue: the offsets belong to the sources' items and users, so both go to their prior mean."""
        super().set_item_text(item_text)
        self.offsets_at_prior_mean = True

    def item_embedding(self, rows: Tensor) -> Tensor:
        """V = f_e(X) + eps_v of global rows ``rows`` [*S] -> [*S, B] (eps_v = 0 zero-shot)."""
        embedding = super().item_embedding(rows)
        if self.offsets_at_prior_mean:
            return embedding
        return embedding + self.item_std * self.item_z[rows]

    def user_states(self, batch: PreRecBatch, history_keep: Tensor | None = None) -> Tensor:
        """U = f_seq(H) + eps_u before each position; eps_u = 0 for users without a fitted offset. [R, L, B]"""
        states = super().user_states(batch, history_keep)  # [R, L, B]
        if self.offsets_at_prior_mean:
            return states
        rows = batch.user_index[batch.user_position]  # [R] global user rows
        fitted = rows < self.user_z.shape[0]  # [R]
        offsets = self.user_z[rows.clamp(max=self.user_z.shape[0] - 1)] * fitted.unsqueeze(-1)  # [R, B]
        return states + self.user_std * offsets.unsqueeze(1)

    def negative_log_prior(self, batch: PreRecBatch) -> Tensor:
        """The offsets' Gaussian -log-priors (up to a constant) over N_obs, the unit of the mean loss: every item
        offset, and the batch's users' scaled to all training users (the users plate is subsampled). []"""
        items = 0.5 * self.item_z.pow(2).sum()
        users = batch.user_index[batch.user_index < self.user_z.shape[0]]  # [U_b]
        scale = self.user_z.shape[0] / max(len(users), 1)
        return (items + scale * 0.5 * self.user_z[users].pow(2).sum()) / self.n_obs


def offset_stds(prior_units: str, lambda_v: float, lambda_u: float, n_obs: int) -> tuple[float, float]:
    """σ_v and σ_u of precisions λ_v, λ_u read in ``prior_units`` (PreRec's, models/config.py): 1/sqrt(λ) in total
    units, 1/sqrt(λ·N_obs) per observation (both per-observation readings: these are offsets)."""
    unit = 1.0 if prior_units == "total" else float(n_obs)
    return 1.0 / math.sqrt(lambda_v * unit), 1.0 / math.sqrt(lambda_u * unit)
