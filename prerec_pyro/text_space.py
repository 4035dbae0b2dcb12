"""Per-domain transforms of a catalogue's text vectors: statistics of its texts only, never of an interaction, so a
target's are known at zero-shot (docs/DESIGN.md, "Text centred per domain").

``whiten_by_domain`` is the whitening that ``TextEncoderConfig.centering = "whiten"`` applies: each domain's block
centred on its own mean and multiplied by the inverse square root of its own covariance (ZCA, the symmetric
whitening, so the axes stay those of the encoder and two domains' vectors remain comparable; Bell & Sejnowski
1997), the covariance shrunk toward a multiple of the identity by the Ledoit-Wolf estimate (Ledoit & Wolf 2004,
"A well-conditioned estimator for large-dimensional covariance matrices"), since a catalogue of a few thousand texts
estimates 384 x 384 entries poorly. Whitening sentence vectors is BERT-whitening (Su et al. 2021); UniSRec's
adaptor learns an (x - b)W of its own.

Shape legend: J = items, T = text dimension, J_k = a domain's items.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def domain_blocks(vectors: Tensor, sizes: Sequence[int], name: str) -> tuple[Tensor, ...]:
    """``vectors`` [J, T] split into consecutive domains of ``sizes`` items each; ``ValueError`` (naming the caller
    ``name``) when they do not split the rows into non-empty blocks."""
    if sum(sizes) != vectors.shape[0] or any(size < 1 for size in sizes):
        raise ValueError(f"{name}: domain sizes {list(sizes)} do not split {vectors.shape[0]} text vectors into "
                         "non-empty blocks")
    return torch.split(vectors, list(sizes))  # each [J_k, T]


def shrunk_covariance(centred: Tensor) -> Tensor:
    """The Ledoit-Wolf covariance of the rows of ``centred`` [n, T] (mean 0): (1 - s)·S + s·μ·I with S = XᵀX / n,
    μ = tr(S) / T and s = min(b², d²) / d², d² = ‖S - μI‖², b² = Σ_k ‖x_k x_kᵀ - S‖² / n² (s = 1 when S is
    already μI). [T, T]"""
    n, dim = centred.shape
    sample = centred.T @ centred / n  # [T, T]
    mu = sample.trace() / dim
    identity = torch.eye(dim, dtype=sample.dtype, device=sample.device)
    distance = (sample - mu * identity).square().sum()  # d²
    spread = ((centred.square().sum(1).square().sum() - n * sample.square().sum()) / n**2).clamp(min=0.0)  # b²
    shrinkage = torch.where(distance > 0, torch.minimum(spread, distance) / distance.clamp(min=1e-300), 1.0)
    return (1 - shrinkage) * sample + shrinkage * mu * identity


def whiten_block(block: Tensor) -> Tensor:
    """One domain's vectors [J_k, T] minus their mean, times sqrt(μ)·Σ^(-1/2) (Σ: ``shrunk_covariance``, μ: its mean
    eigenvalue), in float64: the block's covariance becomes about μ·I, its mean squared norm that of the centred
    block (the encoder's scale, which f_e and the text channel's temperature were set for). [J_k, T]"""
    values = block.double()  # [J_k, T]
    centred = values - values.mean(dim=0, keepdim=True)  # [J_k, T]
    covariance = shrunk_covariance(centred)  # [T, T]
    mu = covariance.trace() / covariance.shape[0]
    if mu <= 0:  # one item, or identical texts: nothing to whiten
        return centred.to(block.dtype)
    eigenvalues, vectors = torch.linalg.eigh(covariance)  # [T], [T, T]
    inverse_root = vectors @ torch.diag((mu / eigenvalues.clamp(min=mu * 1e-12)).sqrt()) @ vectors.T  # [T, T]
    return (centred @ inverse_root).to(block.dtype)  # [J_k, T]


def whiten_by_domain(vectors: Tensor, sizes: Sequence[int]) -> Tensor:
    """``vectors`` [J, T] of consecutive domains of ``sizes`` items each (global row order), each domain's block
    whitened by its own statistics (``whiten_block``). [J, T]"""
    return torch.cat([whiten_block(block) for block in domain_blocks(vectors, sizes, "whiten_by_domain")])
