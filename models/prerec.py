"""PreRec (Lin et al., WSDM 2024, Fig. 1 and Eq. 6) written literally as a Pyro model.

Generative story, in the paper's symbols (B = embedding size; precision λ means covariance λ⁻¹·I_B)::

    for each domain k                  (plate "domains")
        D_k     ~ N(0, λ_d⁻¹ I_B)                           domain properties (cross-domain bias)
    for each item j of domain k        (plate "items", every item of every domain, never subsampled)
        m_j     = f_e(X_j)                                  text embedding of the item's text vector X_j
        eps_z_j ~ N(0, λ_z⁻¹ I_B);  Z_j(t) = f_pop(F_j(t)) + eps_z_j     in-domain (popularity) bias
        eps_v_j ~ N(0, λ_v⁻¹ I_B);  V_j(t) = eps_v_j + D_k + Z_j(t) + m_j  [+ eps_v_shared_{id(j)}, see below]
    for each user i of domain k        (plate "users", subsampled to the batch's users)
        n_i     = f_seq(D_k, H_i) [+ m_{last(H_i)}]         causal Transformer, D_k as the first token
        eps_u_i ~ N(0, λ_u⁻¹ I_B);  U_i = eps_u_i + n_i
        for each window of i's sequence  (plate "sequences", subsampled to the batch)
          for each position t          (plate "positions")
            R_it ~ Categorical(softmax_j(U_it·V_j(t) + D_k·W_d + Z_j(t)·W_z)),  j over the items of domain k

F_j(t) are the popularity factors of item j in the interval before t (data). Sample sites are named by the symbols
(``D``, ``eps_v``, ``eps_z``, ``eps_u``; the observed next items ``R``). The networks f_e, f_pop, f_seq and the
vectors W_d, W_z are point-estimated parameters registered with ``pyro.module``. D_k·W_d (and U·D_k inside U·V_j)
is the same for every item of domain k and cancels in the softmax; it is kept because the graph has it.

Shared item offsets (``shared_item_offsets``, an extension; off reproduces Eq. 6 exactly). The same item can be
sold or rated in several domains (item j of domain k and item j' of domain k' with one id). Its offset is then split
into a part shared by all domains and a domain-specific, confounded part::

    for each distinct item id i         (plate "item_ids")
        eps_v_shared_i ~ N(0, λ_vs⁻¹ I_B)
    V_j(t) = eps_v_j + eps_v_shared_{id(j)} + D_k + Z_j(t) + m_j

eps_v_shared is a latent of the item, not of the domain: zero-shot keeps its estimate for target items the sources
list (its prior mean 0 for the rest) and intervenes on eps_v, D, eps_z and eps_u as Eq. 8 does. It is not a
confounder and the paper has no value for its prior: λ_vs is always read in total units (below), so the default
λ_vs = 100 is the paper's λ_v read literally: an item's identity can live in its shared part while the confounded
parts keep the paper's per-observation strength.

Last-item skip (``last_item_skip``, an extension; off reproduces Eq. 6). At each position the user state also gets
the text embedding of the last history item, n_it = f_seq(D_k, H_i)_t + m_{h_{t-1}} (0 at the first position), so
U·V carries the text similarity m_last·m_j of the SBERT baseline in the learned space and the Transformer models
what the last item does not say.

Text channel (``text_channel``, an extension; "off" reproduces Eq. 6). U and V also carry the frozen, normalised
text vectors X̂ = X/‖X‖ in a channel of their own, the user's side scaled by learned temperatures τ::

    "last":       U_it = [eps_u_i + n_it ; τ_1·X̂_{h_{t-1}}],   V_j(t) = [eps_v_j + D_k + Z_j(t) + m_j ; X̂_j]
    "last+mean":  U_it = [... ; τ_1·X̂_{h_{t-1}} + τ_2·mean_{s<t} X̂_{h_s}],  V_j(t) as for "last"

so U·V gains τ_1·cos(X_{h_{t-1}}, X_j), the SBERT baseline's score (and τ_2 times the candidate's similarity to the
history's mean text vector). No learned map touches the channel: on a platform whose texts the networks never saw,
it still holds what the text encoder knows, and the learned parts model what it misses.

Repeat term (``repeat_term``, an extension; off reproduces Eq. 6). The logit of an item already in the window's
history gets a learned weight w_r: R_it ~ Categorical(softmax_j(... + w_r·1[j ∈ H_i,<t])). A dot product cannot say
"like the last item, but not the last item" (U·V_last holds ‖m_last‖² and, with the text channel, τ·1); w_r says how
often people take an item again, one number that transfers across platforms (films: never; groceries: often).

Units of λ (``prior_units``). Eq. 7 sets each Gaussian prior once against a log-likelihood summed over all N_obs
observed next items: ``"total"`` reads λ so, literally. The paper's λ values (λ_d = 0.3, λ_v = 100) were tuned in
the authors' code as Adam weight decay on the *mean* per-observation loss, i.e. as a prior N_obs times stronger;
``"per_observation"`` reads them that way: every site's precision (eps_v_shared's excepted) is λ·N_obs, still a
Gaussian prior on a Pyro sample site (docs/DESIGN.md, "Units of λ"). ``"offsets_per_observation"`` reads the
offsets' λ (eps_v, eps_z, eps_u) per observation and λ_d in total units: an offset row is seen by a handful of
observations and would otherwise absorb an item's or a user's identity, while each D_k is one vector per domain,
seen by all of the domain's observations, that cannot memorise anything; per observation its prior std is about
1e-3 and do(D = 0) removes nothing. N_obs is a buffer of the model (``n_obs``),
set by the trainer and saved with the networks, so a zero-shot back-door draw of D uses the prior that was fitted.

Switching ``use_domain``, ``use_popularity`` and ``use_offsets`` off gives PreRec_n, the ablation without D, Z
and the offsets; its first token is then a learned start vector.

Shape legend: K = domains, J = items (all domains), I = distinct item ids, N = users, R = sequences in the batch,
L = positions, C = candidate items, P = periods in the batch, B = embedding size, T = text dimension (V and U are
[.., B + T] with the text channel).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.nets import CausalGRU, CausalTransformer, PopularityNet, TextHead

from .candidates import CandidateScores
from .categorical import CandidateCategorical
from .config import (
    PARAMETRISATIONS,
    PRIOR_UNITS,
    RECOMMENDED,
    RECOMMENDED_POPULARITY_MODE,
    SEQUENCE_MODELS,
    TEXT_CHANNELS,
    TEXT_HEADS,
    TRANSFORMER_DTYPES,
    PreRecConfig,
)

__all__ = ["D", "EPS_U", "EPS_V", "EPS_V_SHARED", "EPS_Z", "LATENT_SITES", "PARAMETRISATIONS", "PRIOR_UNITS", "R",
           "RECOMMENDED", "RECOMMENDED_POPULARITY_MODE", "REPEAT_UNIT", "SEQUENCE_MODELS", "TEXT_CHANNELS",
           "TEXT_HEADS", "TRANSFORMER_DTYPES", "PreRecConfig", "PreRecModel"]

D, EPS_V, EPS_Z, EPS_U, R = "D", "eps_v", "eps_z", "eps_u", "R"
EPS_V_SHARED = "eps_v_shared"  # the cross-domain part of an item's offset (shared_item_offsets)
LATENT_SITES = (D, EPS_V_SHARED, EPS_V, EPS_Z, EPS_U)
REPEAT_UNIT = 10.0  # w_r = REPEAT_UNIT x its parameter


class PreRecModel(CandidateScores, nn.Module):
    """The PreRec PGM over a fixed set of domains, items (global rows) and users (global rows)."""

    def __init__(self, config: PreRecConfig, n_domains: int, n_users: int, item_text: Tensor,
                 item_key: Tensor | None = None):
        super().__init__()
        if config.shared_item_offsets and not config.use_offsets:
            raise ValueError("shared_item_offsets needs use_offsets (the shared part splits eps_v)")
        self.config = config
        hidden = config.hidden_dim
        self.register_buffer("item_text", item_text.float(), persistent=False)  # [J, T]
        self.register_buffer("item_key", torch.zeros(0, dtype=torch.long), persistent=False)  # [J]
        self.register_buffer("item_text_unit", torch.zeros(0), persistent=False)  # [J, T]: X̂ (text channel only)
        self.set_catalogue(n_domains, n_users, item_text, item_key)
        self.register_buffer("n_obs", torch.ones(()))  # N_obs behind per-observation priors (set by the trainer)
        self.f_e = TextHead(item_text.shape[1], hidden, config.text_dropout, config.text_head == "residual")
        if config.sequence_model == "transformer":
            self.f_seq = CausalTransformer(hidden, config.n_layers, config.n_heads, config.max_len, config.dropout,
                                           getattr(torch, config.transformer_dtype))
        else:
            self.f_seq = CausalGRU(hidden, config.n_layers, config.dropout)
        if config.use_popularity:
            self.f_pop = PopularityNet(config.n_factors, hidden, config.pop_width)
            self.w_z = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        if config.use_domain:
            self.w_d = nn.Parameter(torch.randn(hidden) / hidden**0.5)
        else:
            self.start = nn.Parameter(torch.zeros(hidden))
        if config.repeat_term:  # w_r in units of REPEAT_UNIT logits (see ``w_r``)
            self.repeat_weight = nn.Parameter(torch.zeros(()))
        if config.text_channel != "off":  # τ_1 (last item) [, τ_2 (history mean)]
            n_tau = 1 if config.text_channel == "last" else 2
            self.log_tau = nn.Parameter(torch.full((n_tau,), float(config.text_temperature)).log())

    @property
    def w_r(self) -> Tensor:
        """The repeat weight in logits. Stored in units of ``REPEAT_UNIT``: Adam moves a parameter by about its
        learning rate per step whatever the gradient's scale, and w_r must travel several logits in a CPU budget of
        a few hundred steps."""
        return REPEAT_UNIT * self.repeat_weight

    def set_catalogue(self, n_domains: int, n_users: int, item_text: Tensor, item_key: Tensor | None = None) -> None:
        """Point the model at another set of domains, users and items (e.g. a target domain), keeping the nets.
        ``item_key`` [J]: each item row's distinct item id (default: every row its own id)."""
        n_items = item_text.shape[0]
        key = torch.arange(n_items) if item_key is None else torch.as_tensor(item_key, dtype=torch.long)
        if key.shape != (n_items,) or (n_items and int(key.min()) < 0):
            raise ValueError(f"item_key must hold one non-negative id index per item row ({n_items}), "
                             f"got shape {tuple(key.shape)}")
        self.n_domains, self.n_users, self.n_items = n_domains, n_users, n_items
        if self._item_side_memo is not None:  # a catalogue's kept item side is another catalogue's no more
            self._item_side_memo.clear()
        self.n_item_keys = int(key.max()) + 1 if n_items else 0
        self.item_text = item_text.float().to(self.item_text.device)
        self.item_key = key.to(self.item_text.device)
        if self.config.text_channel != "off":  # X̂ once per catalogue, not per batch (docs/DESIGN.md)
            self.item_text_unit = nn.functional.normalize(self.item_text, dim=-1)  # [J, T]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "n_obs", torch.ones(()))  # runs saved before per-observation priors
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_observation_count(self, n_obs: int) -> None:
        """N_obs of the data the model is fitted to: the unit of per-observation priors."""
        if n_obs < 1:
            raise ValueError(f"n_obs must be >= 1, got {n_obs}")
        self.n_obs.fill_(float(n_obs))

    # ---- priors -------------------------------------------------------------------------------------------------
    def _gaussian(self, precision: float, per_observation: bool) -> dist.Distribution:
        zero = self.item_text.new_zeros(self.config.hidden_dim)
        if per_observation:
            scale = (precision * self.n_obs).rsqrt().expand(self.config.hidden_dim)  # [B], no host sync
            return dist.Normal(zero, scale).to_event(1)
        return dist.Normal(zero, precision**-0.5).to_event(1)

    def prior(self, site: str) -> dist.Distribution:
        """The prior of latent site ``site`` (one row of its plate)."""
        cfg = self.config
        precision = {D: cfg.lambda_d, EPS_V: cfg.lambda_v, EPS_Z: cfg.lambda_z, EPS_U: cfg.lambda_u,
                     EPS_V_SHARED: cfg.lambda_v_shared}[site]
        return self._gaussian(precision, self.per_observation(site))

    def per_observation(self, site: str) -> bool:
        """Whether ``site``'s precision is read as λ·N_obs (see "Units of λ" in the module docstring)."""
        units = self.config.prior_units
        if units == "offsets_per_observation":
            return site not in (D, EPS_V_SHARED)
        return units == "per_observation" and site != EPS_V_SHARED

    def next_item(self, logits: Tensor, candidates: Tensor | None, n_items: int) -> dist.Distribution:
        return CandidateCategorical(logits, candidates, n_items, validate_args=False)  # NaNs: caught by training

    # ---- the graph ----------------------------------------------------------------------------------------------
    def forward(self, batch: PreRecBatch) -> Tensor:
        """Sample sites in graph order; returns the logits over the batch's candidates. [R, L, C']"""
        pyro.module("prerec", self)
        latent = self.latents(batch)
        logits, candidates, n_items = self.logits(batch, latent)  # [R, L, C']
        rows, length = batch.items.shape
        device = batch.items.device
        with pyro.plate("sequences", batch.n_sequences, subsample=torch.arange(rows, device=device), dim=-2,
                        device=device):
            with pyro.plate("positions", length, dim=-1, device=device):
                pyro.sample(R, self.next_item(logits, candidates, n_items).mask(batch.target_mask),
                            obs=batch.targets)
        return logits

    def latents(self, batch: PreRecBatch) -> dict[str, Tensor | None]:
        """The latent sample sites in graph order (D, eps_v_shared, eps_z, eps_v, eps_u of the batch's users); their
        values by site name, None for the sites this configuration lacks. Scorers run this under ``poutine.do`` /
        ``poutine.condition`` and then ask for the logits they need (``target_logits``)."""
        cfg, device = self.config, batch.items.device
        latent = dict.fromkeys(LATENT_SITES)
        if cfg.use_domain:
            with pyro.plate("domains", self.n_domains, dim=-1, device=device):
                latent[D] = pyro.sample(D, self.prior(D))  # [K, B]
        if cfg.shared_item_offsets:
            with pyro.plate("item_ids", self.n_item_keys, dim=-1, device=device):
                latent[EPS_V_SHARED] = pyro.sample(EPS_V_SHARED, self.prior(EPS_V_SHARED))  # [I, B]
        with pyro.plate("items", self.n_items, dim=-1, device=device):
            if cfg.use_offsets and cfg.use_popularity:
                latent[EPS_Z] = pyro.sample(EPS_Z, self.prior(EPS_Z))  # [J, B]
            if cfg.use_offsets:
                latent[EPS_V] = pyro.sample(EPS_V, self.prior(EPS_V))  # [J, B]
        if cfg.use_offsets:
            with pyro.plate("users", self.n_users, subsample=batch.user_index, dim=-1, device=device):
                latent[EPS_U] = pyro.sample(EPS_U, self.prior(EPS_U))  # [U, B]
        return latent

    # ---- deterministic nodes ------------------------------------------------------------------------------------
    def first_token(self, batch: PreRecBatch, latent: dict) -> Tensor:
        """D_k for every sequence (or the learned start vector without D). [R, B]"""
        rows = batch.items.shape[0]
        if latent[D] is None:
            return self.start.expand(rows, -1)
        return latent[D][batch.domain].expand(rows, -1)

    def catalogue_text(self, batch: PreRecBatch) -> Tensor | None:
        """m = f_e(X) of the domain's whole catalogue when it is the batch's candidate set, else None. A history's
        m_j are then rows of it (f_e works row by row), so the text head runs once per item, not per slot. [J_k, B]"""
        if batch.negatives is not None:
            return None
        start, end = batch.item_offset, batch.item_offset + batch.n_domain_items
        return self._memoised(("m", start, end), lambda: self.f_e(self.item_text[start:end]))  # [J_k, B]

    def history_text(self, batch: PreRecBatch, catalogue: Tensor | None = None) -> Tensor:
        """m = f_e(X) of each window's history items (rows of ``catalogue`` when given). [R, L-1, B]"""
        if catalogue is None:
            return self.f_e(self.item_text[batch.items[:, :-1]])  # [R, L-1, B]
        return catalogue[batch.items[:, :-1] - batch.item_offset]  # [R, L-1, B]

    def user_state(self, batch: PreRecBatch, latent: dict, catalogue: Tensor | None = None,
                   sequence: Tensor | None = None) -> Tensor:
        """U = eps_u + f_seq(D_k, H) [; τ·X̂_last]: the user state before each position; ``catalogue`` is
        ``catalogue_text(batch)`` and ``sequence`` f_seq's output [R, L, B] when already computed. [R, L, B (+ T)]"""
        history = self.history_text(batch, catalogue)  # [R, L-1, B]
        state = self.f_seq(self.first_token(batch, latent), history) if sequence is None else sequence  # [R, L, B]
        if self.config.last_item_skip:  # position p's last history item is the token at p (none at p = 0)
            before = history.new_zeros(len(history), 1, history.shape[-1])  # [R, 1, B]: nothing before p = 0
            state = state + torch.cat([before, history], dim=1)  # [R, L, B]
        if latent[EPS_U] is not None:
            state = state + latent[EPS_U][batch.user_position].unsqueeze(1)  # [R, L, B]
        if self.config.text_channel == "off":
            return state
        return torch.cat([state, self.text_state(batch)], dim=-1)  # [R, L, B + T]

    def user_state_at(self, batch: PreRecBatch, latent: dict, order: Tensor, catalogue: Tensor | None = None,
                      sequence: Tensor | None = None) -> Tensor:
        """``user_state`` at the flat positions ``order`` [A] of [R, L] only (the targets, ``batch.target_layout()``):
        the same values, without the text channel's [R, L, T] for positions that are not scored (docs/DESIGN.md,
        "Scoring only what is ranked"). [A, B (+ T)]"""
        history = self.history_text(batch, catalogue)  # [R, L-1, B]
        if sequence is None:
            sequence = self.f_seq(self.first_token(batch, latent), history)  # [R, L, B]
        length = batch.items.shape[1]
        row, last, has_last = self.previous_positions(batch, order)  # [A] each: the history item before each position
        has_last = has_last.unsqueeze(-1)  # [A, 1]
        state = sequence.reshape(-1, sequence.shape[-1]).index_select(0, order)  # [A, B]
        if self.config.last_item_skip and length > 1:  # windows of one position have no history item to skip
            skip = history.reshape(-1, history.shape[-1]).index_select(0, row * (length - 1) + last)  # [A, B]
            state = state + torch.where(has_last, skip, skip.new_zeros(()))  # [A, B]
        if latent[EPS_U] is not None:
            state = state + latent[EPS_U][batch.user_position[row]]  # [A, B]
        if self.config.text_channel == "off":
            return state
        if self.config.text_channel == "last":  # τ_1·X̂_last, gathered at the targets
            seen = self.normalised_text(batch.items[row, last])  # [A, T]: what ``_text_channel_scores`` reads
            text = self.log_tau.exp()[0] * torch.where(has_last, seen, seen.new_zeros(()))  # [A, T]
        else:
            text = self.text_state(batch).reshape(-1, self.item_text.shape[1])[order]  # [A, T]
        return torch.cat([state, text], dim=-1)  # [A, B + T]

    def text_state(self, batch: PreRecBatch) -> Tensor:
        """The user's side of the text channel: τ_1·X̂_last [+ τ_2·mean X̂ of the history] (0 at position 0). [R, L, T]"""
        seen = self.normalised_text(batch.items[:, :-1])  # [R, L-1, T]
        seen = torch.cat([seen.new_zeros(len(seen), 1, seen.shape[-1]), seen], dim=1)  # [R, L, T]: p's last item
        tau = self.log_tau.exp()  # [1] or [2]
        state = tau[0] * seen  # [R, L, T]
        if self.config.text_channel == "last+mean":
            count = torch.arange(seen.shape[1], device=seen.device).clamp(min=1).unsqueeze(-1)  # [L, 1]
            state = state + tau[1] * seen.cumsum(1) / count  # [R, L, T]
        return state

    def normalised_text(self, rows: Tensor) -> Tensor:
        """X̂ = X / ‖X‖ of items ``rows`` [*S]: the frozen text channel (zero vectors stay zero). [*S, T]"""
        return self.item_text_unit[rows]

    def _pad(self, learned: Tensor) -> Tensor:
        """A term of the learned part of V [*S, B] as a term of V: 0 on the text channel. [*S, B (+ T)]"""
        if self.config.text_channel == "off":
            return learned
        return nn.functional.pad(learned, (0, self.item_text.shape[1]))  # [*S, B + T]

    def static_item_parts(self, rows: Tensor, batch: PreRecBatch, latent: dict, text: Tensor | None = None,
                          with_text: bool = True) -> tuple[Tensor, Tensor]:
        """The time-invariant part of V (m + eps_v + D_k [; X̂], without X̂ when not ``with_text``) and of the bias
        (D_k·W_d) for items ``rows``; ``text`` is their m when already computed."""
        value = self.f_e(self.item_text[rows]) if text is None else text  # [*S, B]
        bias = value.new_zeros(())
        if latent[D] is not None:
            d_k = latent[D][batch.domain]  # [B]
            value, bias = value + d_k, bias + d_k @ self.w_d
        if latent[EPS_V] is not None:
            value = value + latent[EPS_V][rows]
        if latent.get(EPS_V_SHARED) is not None:  # absent from dicts of models without the site
            value = value + latent[EPS_V_SHARED][self.item_key[rows]]
        if with_text and self.config.text_channel != "off":
            value = torch.cat([value, self.normalised_text(rows)], dim=-1)  # [*S, B + T]
        return value, bias

    def popularity_parts(self, rows: Tensor, factors: Tensor, latent: dict) -> Tensor | None:
        """Z = f_pop(F) + eps_z for items ``rows`` [*S] with factors ``factors`` [*S, F] (None without Z)."""
        if not self.config.use_popularity:
            return None
        z = self.f_pop(factors)  # [*S, B]
        return z if latent[EPS_Z] is None else z + latent[EPS_Z][rows]

    def eps_z_rows(self, rows: Tensor, latent: dict) -> Tensor | None:
        """eps_z of items ``rows`` [*S] (None without the site). [*S, B]"""
        return None if latent[EPS_Z] is None else latent[EPS_Z][rows]

    def item_parts(self, rows: Tensor, factors: Tensor, batch: PreRecBatch, latent: dict) -> tuple[Tensor, Tensor]:
        """V and the item bias Z·W_z + D_k·W_d of items ``rows`` [*S] with popularity factors [*S, F]."""
        value, bias = self.static_item_parts(rows, batch, latent)
        z = self.popularity_parts(rows, factors, latent)
        if z is None:
            return value, bias.expand(value.shape[:-1])
        return value + self._pad(z), bias + z @ self.w_z

    def logits(self, batch: PreRecBatch, latent: dict) -> tuple[Tensor, Tensor | None, int]:
        """Logits of the observed site: (logits [R, L, C'], candidate items or None, catalogue size J_k). Only target
        positions are scored; the others (padding, history-only positions) hold 0 and are masked."""
        catalogue = self.catalogue_text(batch)  # [J_k, B] or None
        order, _ = batch.target_layout()
        users = self.user_state_at(batch, latent, order, catalogue)  # [A, B (+ T)]
        at_targets = self._candidate_logits(users, batch, latent, catalogue)[0]  # [A, C]
        rows, length = batch.items.shape
        scores = at_targets.new_zeros(rows * length, at_targets.shape[1]).index_copy(0, order, at_targets)
        scores = scores.reshape(rows, length, -1)  # [R, L, C]
        if batch.negatives is None:
            return scores, None, batch.n_domain_items
        factors = batch.factors_targets.reshape(rows * length, -1)[order]  # [A, F]: target positions only
        value, bias = self.item_parts(batch.items.reshape(-1)[order], factors, batch, latent)  # [A, B (+ T)], [A]
        at_targets = (users * value).sum(-1) + bias  # [A]
        if self.config.repeat_term:
            at_targets = at_targets + self.w_r * batch.target_seen_before().reshape(-1)[order]  # [A]
        positive = at_targets.new_zeros(rows * length).index_copy(0, order, at_targets).reshape(rows, length)
        duplicate = batch.negatives == batch.targets.unsqueeze(-1)  # [R, L, C]
        scores = scores.masked_fill(duplicate, torch.finfo(scores.dtype).min)
        candidates = torch.cat([batch.targets.unsqueeze(-1), batch.negatives.expand_as(scores)], dim=-1)
        return torch.cat([positive.unsqueeze(-1), scores], dim=-1), candidates, batch.n_domain_items

    def target_logits(self, batch: PreRecBatch, latent: dict) -> Tensor:
        """The observed site's logits at the batch's target positions only, over its candidates (the negatives'
        part when they are sampled), rows in ``batch.target_layout()`` order: what ``logits`` puts at those
        positions, without the [R, L, C] layout. [A, C]"""
        catalogue = self.catalogue_text(batch)  # [J_k, B] or None
        users = self.user_state_at(batch, latent, batch.target_layout()[0], catalogue)  # [A, B (+ T)]
        return self._candidate_logits(users, batch, latent, catalogue)[0]

    @torch.no_grad()
    def target_logits_and_sequence_term(self, batch: PreRecBatch, latent: dict) -> tuple[Tensor, Tensor]:
        """``target_logits`` over a whole catalogue [A, J], and the sequence model's term of them, n·V_j(t) with
        n = f_seq(D_k, H) [A, J]: the logits with a silent f_seq (n = 0) are their difference, since the logits
        are linear in the user state. One pass for both, so the text channel's product is not built twice
        (inference/evidence.py weighs the two)."""
        if batch.negatives is not None:
            raise ValueError("target_logits_and_sequence_term scores a whole catalogue (batch.negatives must be None)")
        catalogue = self.catalogue_text(batch)  # [J_k, B]
        sequence = self.f_seq(self.first_token(batch, latent), self.history_text(batch, catalogue))  # [R, L, B]
        order = batch.target_layout()[0]  # [A]
        users = self.user_state_at(batch, latent, order, catalogue, sequence)  # [A, B (+ T)]
        at_targets = sequence.reshape(-1, sequence.shape[-1])[order]  # [A, B]
        return self._candidate_logits(users, batch, latent, catalogue, at_targets)  # [A, J], [A, J]
