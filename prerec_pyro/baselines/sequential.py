"""Learnable text-based sequential baselines (the paper's Appendix B): SASRec, GRU4Rec and ZESRec on frozen text
vectors.

Items are represented only through their frozen text vectors X_j (no item-id embeddings), so a trained model can
score any catalogue: ``set_item_text`` points it at another one (e.g. a target domain's items, zero-shot).

- ``SequentialRecommender``: item encoder (``TextHead`` f_e by default) -> f_seq (``CausalTransformer`` or
  ``CausalGRU``) with a learned start token as the first input; logit = user state · item embedding.
- ``SasRec``: the Transformer configuration (trained in-domain from scratch in the paper's table).
- ``Gru4Rec``: the GRU configuration (trained in-domain). ZESRec adds item and user offsets to it (``zesrec.py``).

The logits mirror ``PreRecModel.logits``: the full catalogue of the batch's domain when ``batch.negatives is None``,
otherwise [positive, shared negatives] with the positive at slot 0 and a negative equal to the target masked.

Shape legend: R = sequences, L = positions, C = candidates, B = embedding size, T = text dimension,
J_all = items of every domain (global rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.nets import CausalGRU, CausalTransformer, TextHead

SEQUENCE_MODELS = ("transformer", "gru")


@dataclass(frozen=True)
class SequentialConfig:
    """Sizes of a sequential baseline (the PreRec defaults: B = 256, 2 layers, 4 heads)."""

    hidden_dim: int = 256
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 64
    dropout: float = 0.1
    sequence_model: str = "transformer"

    def __post_init__(self):
        if self.sequence_model not in SEQUENCE_MODELS:
            raise ValueError(f"sequence_model must be one of {SEQUENCE_MODELS}, got {self.sequence_model!r}")
        if self.hidden_dim < 1 or self.n_layers < 1 or self.max_len < 2:
            raise ValueError(f"hidden_dim, n_layers must be >= 1 and max_len >= 2, got {self.hidden_dim}, "
                             f"{self.n_layers}, {self.max_len}")
        if self.sequence_model == "transformer" and self.hidden_dim % self.n_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be divisible by n_heads {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class SequentialRecommender(nn.Module):
    """A text-based next-item model: logits = f_seq(start, item embeddings of the history) · item embedding.

    Args:
        item_text: frozen text vectors in the global item-row order of a ``MultiDomainData``. [J_all, T]
        config: sizes and the sequence model.
        item_encoder: maps text vectors [..., T] to item embeddings [..., B]; a ``TextHead`` when omitted.
    """

    label = "Sequential"

    def __init__(self, item_text: Tensor, config: SequentialConfig, item_encoder: nn.Module | None = None):
        super().__init__()
        if item_text.dim() != 2:
            raise ValueError(f"item_text must be [items, text_dim], got shape {tuple(item_text.shape)}")
        self.config = config
        self.text_dim = int(item_text.shape[1])
        hidden = config.hidden_dim
        self.register_buffer("item_text", item_text.float(), persistent=False)  # [J_all, T]
        self.item_encoder = item_encoder if item_encoder is not None else TextHead(self.text_dim, hidden)
        if config.sequence_model == "transformer":
            self.f_seq = CausalTransformer(hidden, config.n_layers, config.n_heads, config.max_len, config.dropout)
        else:
            self.f_seq = CausalGRU(hidden, config.n_layers, config.dropout)
        self.start = nn.Parameter(torch.zeros(hidden))

    def set_item_text(self, item_text: Tensor) -> None:
        """Point the model at another catalogue (global rows of another ``MultiDomainData``), keeping the nets."""
        if item_text.dim() != 2 or item_text.shape[1] != self.text_dim:
            raise ValueError(f"item_text must be [items, {self.text_dim}] like the training text vectors, "
                             f"got shape {tuple(item_text.shape)}")
        self.item_text = item_text.float().to(self.item_text.device)

    @property
    def n_items(self) -> int:
        return int(self.item_text.shape[0])

    def item_embedding(self, rows: Tensor) -> Tensor:
        """Item embeddings of global rows ``rows`` [*S] -> [*S, B]."""
        return self.item_encoder(self.item_text[rows])

    def user_states(self, batch: PreRecBatch, history_keep: Tensor | None = None) -> Tensor:
        """The user state before each position (position p scores the item at p); ``history_keep`` [R, L-1] bool
        zeroes the embeddings of the history items it leaves out (an augmented view). [R, L, B]"""
        history = self.item_embedding(batch.items[:, :-1])  # [R, L-1, B]
        if history_keep is not None:
            history = history * history_keep.unsqueeze(-1)
        first = self.start.expand(batch.items.shape[0], -1)  # [R, B]
        return self.f_seq(first, history)  # [R, L, B]

    def pair_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """Scores of users [..., N, B] against items [M, B] -> [..., N, M] (inner product)."""
        return users @ items.T

    def target_scores(self, users: Tensor, items: Tensor) -> Tensor:
        """Score of each user [..., B] with its own item [..., B] -> [...] (consistent with ``pair_scores``)."""
        return (users * items).sum(-1)

    def logits(self, batch: PreRecBatch) -> Tensor:
        """Full catalogue [R, L, J_k], or [R, L, 1 + C] = [positive, negatives] with sampled negatives."""
        if batch.items.max() >= self.n_items:
            raise ValueError(f"batch item rows reach {int(batch.items.max())} but the model holds {self.n_items} "
                             "text vectors; call set_item_text with the text of this data's catalogue")
        users = self.user_states(batch)  # [R, L, B]
        scores = self.pair_scores(users, self.item_embedding(batch.candidate_rows))  # [R, L, C]
        if batch.negatives is None:
            return scores
        positive = self.target_scores(users, self.item_embedding(batch.items))  # [R, L]
        duplicate = batch.negatives == batch.targets.unsqueeze(-1)  # [R, L, C]
        scores = scores.masked_fill(duplicate, torch.finfo(scores.dtype).min)
        return torch.cat([positive.unsqueeze(-1), scores], dim=-1)  # [R, L, 1 + C]

    def auxiliary_loss(self, batch: PreRecBatch, users: Tensor) -> Tensor:
        """An extra training term over the target states ``users`` [N, B] (UniSRec's sequence-sequence contrast;
        none here). []"""
        return users.new_zeros(())

    def negative_log_prior(self, batch: PreRecBatch) -> Tensor:
        """-log p of the model's latent variables over N_obs, added to the mean loss (none here: the networks are
        point estimates without priors; ZESRec's offsets have one). []"""
        return self.start.new_zeros(())

    def forward(self, batch: PreRecBatch) -> Tensor:
        return self.logits(batch)


class SasRec(SequentialRecommender):
    """SASRec on text vectors: a causal Transformer over the history's text embeddings."""

    label = "SASRec"

    def __init__(self, item_text: Tensor, hidden_dim: int = 256, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 64, dropout: float = 0.1):
        config = SequentialConfig(hidden_dim, n_layers, n_heads, max_len, dropout, sequence_model="transformer")
        super().__init__(item_text, config)


class Gru4Rec(SequentialRecommender):
    """GRU4Rec on text vectors (and ZESRec once pre-trained on the sources and pointed at a target)."""

    label = "GRU4Rec"

    def __init__(self, item_text: Tensor, hidden_dim: int = 256, n_layers: int = 2, max_len: int = 64,
                 dropout: float = 0.1):
        config = SequentialConfig(hidden_dim, n_layers, 1, max_len, dropout, sequence_model="gru")
        super().__init__(item_text, config)
