"""What ``bench_train.py`` races against our Pyro MAP step, in plain PyTorch.

- ``HandLoss``: PreRec's MAP loss written by hand: the model's own nets and logits (``PreRecModel.logits``, plain
  torch), dense latent tables, the Gaussian log-priors and the sampled softmax, without Pyro. It equals the
  ``Trace_ELBO`` loss of ``MapTrainer`` under the AutoDelta guide up to the priors' normalising constants
  (``prior_constant``), so ``ours / hand`` is Pyro's overhead.
- ``AlgebraFloor``: the dense algebra of the same step alone, as bare torch calls of its shapes (the text head, the
  Transformer, the candidate products, forward and backward): what no implementation of the step can skip.
- ``PerSampleReference``: PreRec trained the way the official code does: one causal Transformer pass per
  (history, target) sample over a history padded to ``max_len``, the state at the history's end as the user,
  negatives drawn per sample, V and Z computed for each sample's own candidates, dense per-item and per-user tables.

Shape legend: K = domains, J = items, N = users, R = sequences, L = positions, S = samples, C = negatives,
B = embedding size, F = popularity factors.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from prerec_pyro.data.dataset import MultiDomainData, Windows
from prerec_pyro.models.prerec import EPS_U, EPS_V, EPS_Z, D, PreRecConfig, PreRecModel
from prerec_pyro.nets import CausalTransformer, PopularityNet, TextHead


def _full_prerec(config: PreRecConfig) -> None:
    if not (config.use_domain and config.use_popularity and config.use_offsets):
        raise ValueError("the hand-written loss and the reference cover the full PreRec model (with D, Z and the "
                         f"offsets); got {config}")


def _squares(table: Tensor) -> Tensor:
    return table.pow(2).sum()


def map_loss(model: PreRecModel, batch, latent: dict[str, Tensor], n_obs: int) -> Tensor:
    """-(log-likelihood + log-priors) / n_obs as ``Trace_ELBO`` computes it under a Delta guide, without the priors'
    normalising constants. ``latent[EPS_U]`` holds the rows of the batch's users [U, B]. The subsampled plates scale
    the user priors by N / U and the likelihood by (sequences sampled from) / (sequences in the batch)."""
    cfg = model.config
    logits, _, _ = model.logits(batch, latent)  # [R, L, 1 + C], the observed item in slot 0
    log_lik = (logits[..., 0] - torch.logsumexp(logits, dim=-1))[batch.target_mask].sum()
    user_scale = model.n_users / len(batch.user_index)
    sequence_scale = batch.n_sequences / batch.items.shape[0]
    log_prior = -0.5 * (cfg.lambda_d * _squares(latent[D]) + cfg.lambda_v * _squares(latent[EPS_V])
                        + cfg.lambda_z * _squares(latent[EPS_Z]) + cfg.lambda_u * user_scale * _squares(latent[EPS_U]))
    return -(sequence_scale * log_lik + log_prior) / n_obs


class AlgebraFloor:
    """The dense algebra of one training step and nothing else, as bare torch calls of the step's shapes: the text
    head over the batch's history items, targets and candidates, the Transformer over the histories, the products of
    the target positions' user states with their candidates (with the text channel's columns when the configuration
    has it), a sampled softmax, forward and backward. No priors, popularity, offset tables, Pyro or optimiser."""

    def __init__(self, model: PreRecModel):
        self.f_e, self.f_seq = copy.deepcopy(model.f_e), copy.deepcopy(model.f_seq)
        self.start = nn.Parameter(torch.zeros(model.config.hidden_dim, device=model.item_text.device))
        self.text, self.text_channel = model.item_text, model.config.text_channel != "off"
        self.parameters = [*self.f_e.parameters(), *self.f_seq.parameters(), self.start]

    def step(self, batch) -> None:
        rows = batch.items.shape[0]
        history = self.f_e(self.text[batch.items[:, :-1]])  # [R, L-1, B]
        users = self.f_seq(self.start.expand(rows, -1), history)[batch.target_mask]  # [A, B]
        targets = batch.items[batch.target_mask]  # [A]: the observed items' rows
        positives = self.f_e(self.text[targets])  # [A, B]
        candidates = self.f_e(self.text[batch.candidate_rows])  # [C, B]
        if self.text_channel:
            # [A, T]: the item before each target (a position-0 target takes its row's last slot: the same shape)
            last = nn.functional.normalize(self.text[batch.items], dim=-1)[batch.target_mask.roll(-1, 1)]
            users = torch.cat([users, last], dim=-1)  # [A, B + T]
            positives = torch.cat([positives, nn.functional.normalize(self.text[targets], dim=-1)], dim=-1)
            candidates = torch.cat([candidates, nn.functional.normalize(self.text[batch.candidate_rows], dim=-1)],
                                   dim=-1)  # [C, B + T]
        logits = torch.cat([(users * positives).sum(-1, keepdim=True), users @ candidates.T], dim=1)  # [A, 1 + C]
        (torch.logsumexp(logits, dim=-1) - logits[:, 0]).mean().backward()
        for parameter in self.parameters:
            parameter.grad = None


def prior_constant(model: PreRecModel, n_obs: int) -> float:
    """What ``map_loss`` leaves out: ``pyro_loss = map_loss + prior_constant``."""
    cfg, hidden = model.config, model.config.hidden_dim

    def per_row(precision: float) -> float:  # log N(x | 0, 1/λ) = -λx²/2 + (log λ - log 2π) / 2 per dimension
        return 0.5 * hidden * (math.log(precision) - math.log(2 * math.pi))

    total = (model.n_domains * per_row(cfg.lambda_d) + model.n_items * (per_row(cfg.lambda_v) + per_row(cfg.lambda_z))
             + model.n_users * per_row(cfg.lambda_u))
    return -total / n_obs


class HandLoss(nn.Module):
    """``map_loss`` over dense tables D [K, B], eps_v, eps_z [J, B], eps_u [N, B] (zeros, as init_to_mean)."""

    def __init__(self, model: PreRecModel, n_obs: int):
        super().__init__()
        _full_prerec(model.config)
        self.model, self.n_obs = model, n_obs
        hidden, device = model.config.hidden_dim, model.item_text.device
        self.domains = nn.Parameter(torch.zeros(model.n_domains, hidden, device=device))
        self.eps_v = nn.Parameter(torch.zeros(model.n_items, hidden, device=device))
        self.eps_z = nn.Parameter(torch.zeros(model.n_items, hidden, device=device))
        self.eps_u = nn.Parameter(torch.zeros(model.n_users, hidden, device=device))

    def forward(self, batch) -> Tensor:
        latent = {D: self.domains, EPS_V: self.eps_v, EPS_Z: self.eps_z, EPS_U: self.eps_u[batch.user_index]}  # [U, B]
        return map_loss(self.model, batch, latent, self.n_obs)


@dataclass
class SampleBatch:
    """(history, target) samples of one domain, each with its own negatives."""

    domain: int
    user_index: Tensor  # [S] global user rows
    history: Tensor  # [S, L-1] global item rows (the item_offset after the history: padding)
    last: Tensor  # [S] history length = the position of the user state
    candidates: Tensor  # [S, 1 + C] global item rows, the target first
    factors: Tensor  # [S, 1 + C, F] popularity factors of the candidates at the sample's time
    duplicate: Tensor  # [S, C] negative equal to the target (masked)


class SampleMaker:
    """Draws ``SampleBatch``es from training windows: every target position is a sample."""

    def __init__(self, data: MultiDomainData, windows: list[Windows], n_negatives: int, device: torch.device):
        self.data, self.windows, self.n_negatives, self.device = data, windows, n_negatives, device
        self.targets = [np.nonzero(w.target_mask) for w in windows]  # per domain: (rows [T], positions [T])

    def make(self, domain: int, size: int, rng: np.random.Generator) -> SampleBatch:
        data, dom, win = self.data, self.data.domains[domain], self.windows[domain]
        rows, positions = self.targets[domain]
        pick = rng.choice(len(rows), size, replace=len(rows) < size)
        r, p = rows[pick], positions[pick]  # [S], [S]
        offset, length = int(data.item_offsets[domain]), win.items.shape[1]
        history = np.where(np.arange(length - 1)[None, :] < p[:, None], win.items[r, : length - 1], 0)  # [S, L-1]
        negatives = rng.integers(0, dom.n_items, (size, self.n_negatives))  # [S, C]
        local = np.concatenate([win.items[r, p][:, None], negatives], axis=1)  # [S, 1 + C]
        periods = torch.as_tensor(dom.popularity.period_of(win.times[r, p]), dtype=torch.long)  # [S]
        factors = dom.popularity.factors_at(periods[:, None], torch.as_tensor(local))  # [S, 1 + C, F]
        to = self.device
        return SampleBatch(
            domain=domain, user_index=torch.as_tensor(data.user_rows[domain][win.user[r]]).to(to),
            history=torch.as_tensor(history + offset).to(to), last=torch.as_tensor(p).to(to),
            candidates=torch.as_tensor(local + offset).to(to), factors=factors.to(to),
            duplicate=torch.as_tensor(negatives == local[:, :1]).to(to))


class PerSampleReference(nn.Module):
    """PreRec the official way: a Transformer pass per sample, per-sample candidates, dense tables."""

    def __init__(self, config: PreRecConfig, n_domains: int, n_users: int, item_text: Tensor, n_obs: int):
        super().__init__()
        _full_prerec(config)
        self.config, self.n_users, self.n_obs = config, n_users, n_obs
        hidden, device = config.hidden_dim, item_text.device
        self.register_buffer("item_text", item_text.float(), persistent=False)  # [J, T]
        self.f_e = TextHead(item_text.shape[1], hidden)
        self.f_seq = CausalTransformer(hidden, config.n_layers, config.n_heads, config.max_len, config.dropout,
                                       getattr(torch, config.transformer_dtype))
        self.f_pop = PopularityNet(config.n_factors, hidden, config.pop_width)
        self.w_z = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        self.w_d = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        self.domains = nn.Parameter(torch.zeros(n_domains, hidden))
        self.eps_v = nn.Parameter(torch.zeros(item_text.shape[0], hidden))
        self.eps_z = nn.Parameter(torch.zeros(item_text.shape[0], hidden))
        self.eps_u = nn.Parameter(torch.zeros(n_users, hidden))
        self.to(device)

    def forward(self, batch: SampleBatch) -> Tensor:
        """Mean sampled-softmax NLL of the batch's samples plus the priors / n_obs."""
        cfg, size = self.config, len(batch.last)
        d_k = self.domains[batch.domain]  # [B]
        history = self.f_e(self.item_text[batch.history])  # [S, L-1, B]
        states = self.f_seq(d_k.expand(size, -1), history)  # [S, L, B]
        user = states[torch.arange(size, device=states.device), batch.last] + self.eps_u[batch.user_index]  # [S, B]
        z = self.f_pop(batch.factors) + self.eps_z[batch.candidates]  # [S, 1 + C, B]
        value = self.f_e(self.item_text[batch.candidates]) + self.eps_v[batch.candidates] + d_k + z  # [S, 1 + C, B]
        logits = torch.einsum("sb,scb->sc", user, value) + z @ self.w_z + d_k @ self.w_d  # [S, 1 + C]
        negatives = logits[:, 1:].masked_fill(batch.duplicate, torch.finfo(logits.dtype).min)
        logits = torch.cat([logits[:, :1], negatives], dim=1)
        nll = -(logits[:, 0] - torch.logsumexp(logits, dim=-1)).mean()
        prior = 0.5 * (cfg.lambda_d * _squares(self.domains) + cfg.lambda_v * _squares(self.eps_v)
                       + cfg.lambda_z * _squares(self.eps_z)
                       + cfg.lambda_u * self.n_users / size * _squares(self.eps_u[batch.user_index]))
        return nll + prior / self.n_obs


class PlainTrainer:
    """Adam over every parameter of ``loss_module`` with gradient-norm clipping, as ``MapTrainer`` does."""

    def __init__(self, loss_module: nn.Module, lr: float, grad_clip_norm: float | None):
        self.module, self.grad_clip_norm = loss_module, grad_clip_norm
        self.params = [p for p in loss_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def step(self, batch) -> float:
        loss = self.module(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip_norm)
        self.optimizer.step()
        return float(loss.detach())
