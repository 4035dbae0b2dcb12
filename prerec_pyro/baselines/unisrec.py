"""UniSRec (Hou et al., KDD 2022) on frozen text vectors, as in PreRec's Appendix B (the paper's Appendix B).

SASRec whose item embedding is a mixture-of-experts adaptor over the text vector x (parametric whitening)::

    e_k(x) = (x - c_k) W_k                 k = 1..8, c_k [T] a learned centre, W_k [T, B]
    g(x)   = softmax(x W_g + ε ⊙ softplus(x W_n)),  ε ~ N(0, I) in training only (noisy gating), 0 in scoring
    v(x)   = sum_k g_k(x) e_k(x)

Scores are cosine similarities divided by the temperature τ = 0.07 (user state and item embedding both
L2-normalised), in training and in scoring alike. Pre-train on the sources with the in-batch contrastive loss
(``BaselineTrainConfig(loss="contrastive")``) plus the sequence-sequence contrastive term weighted λ = 1e-3 (the
official pre-training weight): each target's user state against the state of an augmented view of the same history
(each history item's embedding dropped with probability 0.2), the batch's other states as negatives. UniSRec drops
items from the sequence; here the view zeroes them, which keeps one state per position. Dropout 0.5 in the
Transformer (the official setting). Score a target zero-shot (``set_item_text``), fine-tune by training the adaptor
only (``fit_baseline(..., trainable=model.adaptor_parameters())``: the Transformer stays frozen).

Not kept from the original: the item-id embeddings of its transductive setting (this setting is inductive: text
only).

Shape legend: T = text dimension, B = embedding size, E = experts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch

from .sequential import SequentialConfig, SequentialRecommender


class MoEAdaptor(nn.Module):
    """The MoE adaptor: a softmax-gated sum of ``n_experts`` whitening projections (x - c_k) W_k."""

    def __init__(self, text_dim: int, hidden_dim: int, n_experts: int = 8, dropout: float = 0.0):
        super().__init__()
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        bound = 1.0 / math.sqrt(text_dim)  # nn.Linear's default initialisation
        self.centres = nn.Parameter(torch.zeros(n_experts, text_dim))  # [E, T]
        self.weights = nn.Parameter(torch.empty(n_experts, text_dim, hidden_dim).uniform_(-bound, bound))  # [E, T, B]
        self.gate = nn.Parameter(torch.zeros(text_dim, n_experts))  # [T, E]
        self.noise = nn.Parameter(torch.zeros(text_dim, n_experts))  # [T, E] the gate's noise scale (softplus)
        self.dropout = nn.Dropout(dropout)

    def experts(self, text: Tensor) -> Tensor:
        """Every expert's projection (x - c_k) W_k of ``text`` [..., T] -> [..., E, B], computed as x W_k - c_k W_k:
        one product [..., T] @ [T, E * B] and no centred copy [..., E, T] of the input."""
        n_experts, text_dim, hidden = self.weights.shape
        stacked = self.weights.permute(1, 0, 2).reshape(text_dim, n_experts * hidden)  # [T, E * B]
        projected = (self.dropout(text) @ stacked).unflatten(-1, (n_experts, hidden))  # [..., E, B]
        return projected - torch.einsum("et,etb->eb", self.centres, self.weights)  # [..., E, B]

    def gates(self, text: Tensor) -> Tensor:
        """Expert weights from the text vector [..., T] -> [..., E] (rows sum to 1); noisy in training."""
        logits = text @ self.gate  # [..., E]
        if self.training:
            logits = logits + torch.randn_like(logits) * F.softplus(text @ self.noise)
        return torch.softmax(logits, dim=-1)

    def forward(self, text: Tensor) -> Tensor:
        return (self.gates(text).unsqueeze(-1) * self.experts(text)).sum(-2)  # [..., B]


class UniSRec(SequentialRecommender):
    """SASRec over MoE-adapted text vectors with temperature-scaled cosine scores.

    Args:
        item_text: frozen text vectors in global item-row order. [J_all, T]
        hidden_dim, n_layers, n_heads, max_len, dropout: the Transformer (PreRec's sizes by default).
        n_experts: experts of the adaptor (8 in the paper).
        temperature: τ of the contrastive loss and of the scores (0.07).
        adaptor_dropout: dropout on the text vector inside the adaptor (0.2, the official UniSRec setting).
        sequence_weight: λ of the sequence-sequence contrastive term (1e-3); item_drop: its augmentation's rate.
    """

    label = "UniSRec"

    def __init__(self, item_text: Tensor, hidden_dim: int = 256, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 64, dropout: float = 0.5, n_experts: int = 8, temperature: float = 0.07,
                 adaptor_dropout: float = 0.2, sequence_weight: float = 1e-3, item_drop: float = 0.2):
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if sequence_weight < 0 or not 0.0 <= item_drop < 1.0:
            raise ValueError(f"need sequence_weight >= 0 and item_drop in [0, 1), got {sequence_weight}, {item_drop}")
        config = SequentialConfig(hidden_dim, n_layers, n_heads, max_len, dropout, sequence_model="transformer")
        adaptor = MoEAdaptor(item_text.shape[-1], hidden_dim, n_experts, adaptor_dropout)
        super().__init__(item_text, config, item_encoder=adaptor)
        self.temperature, self.sequence_weight, self.item_drop = temperature, sequence_weight, item_drop

    @property
    def adaptor(self) -> MoEAdaptor:
        return self.item_encoder

    def adaptor_parameters(self) -> list[nn.Parameter]:
        """The parameters fine-tuned on a target (everything else, the Transformer and start token, is frozen)."""
        return list(self.adaptor.parameters())

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """cos(user, item) / τ for users [..., N, B] and items [M, B] -> [..., N, M]."""
        return F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T / self.temperature

    def target_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """cos(user, item) / τ of each user [..., B] with its own item [..., B] -> [...]."""
        return (F.normalize(users, dim=-1) * F.normalize(items, dim=-1)).sum(-1) / self.temperature

    def auxiliary_loss(self, batch: PreRecBatch, users: Tensor) -> Tensor:
        """λ times the sequence-sequence contrastive loss of the target states ``users`` [N, B] (training only):
        each against its augmented view's state, the other targets' views as negatives, a view of a target with
        the same next item masked (as the official same-item mask). []"""
        if not (self.training and self.sequence_weight > 0):
            return users.new_zeros(())
        kept = torch.rand(batch.items[:, :-1].shape, device=users.device) >= self.item_drop  # [R, L-1]
        views = self.user_states(batch, history_keep=kept)[batch.target_mask]  # [N, B]
        rows = batch.items[batch.target_mask]  # [N] the targets' next items
        scores = F.normalize(users, dim=-1) @ F.normalize(views, dim=-1).T / self.temperature  # [N, N]
        same = rows.unsqueeze(1) == rows.unsqueeze(0)  # [N, N]
        same.fill_diagonal_(False)
        scores = scores.masked_fill(same, torch.finfo(scores.dtype).min)
        return self.sequence_weight * F.cross_entropy(scores, torch.arange(len(rows), device=scores.device))
