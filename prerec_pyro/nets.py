"""The neural parts of PreRec as plain ``nn.Module``s (no Pyro calls; the model registers them).

- ``TextHead`` f_e: frozen text vector X_j -> item content embedding m_j.
- ``PopularityNet`` f_pop: popularity factors F_j -> popularity embedding (the mean of Z_j).
- ``CausalTransformer`` / ``CausalGRU`` f_seq: (first token, history embeddings) -> user state per position.

Shape legend: R = sequences in a batch, L = positions per sequence, B = embedding size, T = text dim,
P = popularity factors (4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextHead(nn.Module):
    """f_e: a trainable linear head over frozen sentence vectors. ``dropout`` > 0 drops text dimensions while
    training (UniSRec's dropout on the text vectors before its adaptor, Hou et al. 2022); 0 calls no dropout at
    all, so that training draws the same random numbers as without the option.

    ``residual``: f_e(X) = s·Q·X + W·X + b with W and b from 0, where Q [B, T] is a fixed random map with orthonormal
    rows (the rectangular stand-in for an identity) and s = sqrt(T / B) keeps a vector's length (T > B; with B > T,
    orthonormal columns and s = 1): what the head learns is a change to a projection that keeps the encoder's
    geometry on every platform (Johnson-Lindenstrauss), not a map fitted to one catalogue's texts from scratch. Q is
    drawn from its own generator (``PROJECTION_SEED``), so the option moves the global random numbers as the linear
    head does, and it is saved with the head."""

    PROJECTION_SEED = 20240304

    def __init__(self, text_dim: int, hidden_dim: int, dropout: float = 0.0, residual: bool = False):
        super().__init__()
        self.linear = nn.Linear(text_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.register_buffer("projection", None)  # [B, T] with ``residual``
        if residual:
            generator = torch.Generator().manual_seed(self.PROJECTION_SEED)
            gaussian = torch.randn(max(text_dim, hidden_dim), min(text_dim, hidden_dim), generator=generator)
            basis = torch.linalg.qr(gaussian).Q  # [max, min]: orthonormal columns
            rows = basis.T if hidden_dim <= text_dim else basis  # [B, T]: orthonormal rows (columns if B > T)
            self.projection = rows * max(text_dim / hidden_dim, 1.0) ** 0.5  # [B, T]: lengths kept
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, text: Tensor) -> Tensor:
        text = self.dropout(text)  # [..., T]
        out = self.linear(text)  # [..., B]
        return out if self.projection is None else out + text @ self.projection.T  # [..., B]


class PopularityNet(nn.Module):
    """f_pop: an MLP from the popularity factors to the item's popularity embedding."""

    def __init__(self, n_factors: int, hidden_dim: int, width: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_factors, width), nn.GELU(), nn.Linear(width, hidden_dim))

    def forward(self, factors: Tensor) -> Tensor:
        # log1p keeps the heavy-tailed ratios c_j / s_w on a scale an MLP can use; F = 0 maps to 0.
        return self.mlp(torch.log1p(factors))  # [..., P] -> [..., B]


class CausalTransformer(nn.Module):
    """f_seq: a causal Transformer over [first token, m_{h_1}, ..., m_{h_{L-1}}] with learned positions.

    The output at position p is the user state after p history items: it scores the item at position p.
    ``compute_dtype=torch.bfloat16`` runs the encoder layers under autocast (a GPU option); the output is float32.
    """

    def __init__(self, hidden_dim: int, n_layers: int, n_heads: int, max_len: int, dropout: float,
                 compute_dtype: torch.dtype | None = None):
        super().__init__()
        if compute_dtype not in (None, torch.float32, torch.bfloat16):
            raise ValueError(f"compute_dtype must be None, torch.float32 or torch.bfloat16, got {compute_dtype}")
        self.compute_dtype = None if compute_dtype == torch.float32 else compute_dtype
        self.positions = nn.Embedding(max_len, hidden_dim)
        nn.init.normal_(self.positions.weight, std=0.02)  # small beside the item tokens (N(0, 1) would drown them)
        layer = nn.TransformerEncoderLayer(hidden_dim, n_heads, dim_feedforward=4 * hidden_dim, dropout=dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.max_len = max_len

    def forward(self, first: Tensor, history: Tensor) -> Tensor:
        """``first`` [R, B] (the domain vector D_k), ``history`` [R, L-1, B] -> user states [R, L, B]."""
        tokens = torch.cat([first.unsqueeze(1), history], dim=1)  # [R, L, B]
        length = tokens.shape[1]
        if length > self.max_len:
            raise ValueError(f"sequence length {length} exceeds the model's max_len {self.max_len}")
        tokens = tokens + self.positions.weight[:length]  # [R, L, B]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=tokens.dtype)
        low_precision = self.compute_dtype is not None
        with torch.autocast(tokens.device.type, dtype=self.compute_dtype or torch.bfloat16, enabled=low_precision):
            states = self.encoder(tokens, mask=causal, is_causal=True)  # [R, L, B], bf16 under autocast
        return self.norm(states.float())  # [R, L, B]


class CausalGRU(nn.Module):
    """f_seq as a GRU (for GRU-based baselines): the same interface as ``CausalTransformer``."""

    def __init__(self, hidden_dim: int, n_layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(hidden_dim, hidden_dim, num_layers=n_layers, batch_first=True,
                          dropout=dropout if n_layers > 1 else 0.0)

    def forward(self, first: Tensor, history: Tensor) -> Tensor:
        tokens = torch.cat([first.unsqueeze(1), history], dim=1)  # [R, L, B]
        states, _ = self.gru(tokens)  # [R, L, B]
        return states
