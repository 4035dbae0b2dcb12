"""Guides for the PreRec model: AutoDelta (MAP), AutoNormal (mean-field posterior), a structured posterior and a
sparse Delta guide.

Every guide sees the batch's users through the model's subsampled ``users`` plate (``create_plates``), so a user's
offset is paired with that user's data (docs/DESIGN.md pitfall 1). Guides whose joint latent would cover only one
batch of users (``AutoContinuous`` families such as AutoDiagonalNormal, AutoLowRankMultivariateNormal over the whole
model) are refused. The structured guide is the correct way to get one: an ``AutoGuideList`` whose
``AutoLowRankMultivariateNormal`` part sees only the domain latents D (global, never subsampled), so the posterior
keeps the correlations between the D_k, and whose ``AutoNormal`` part holds every other site under the users plate.

A model whose config is non-centred (``PreRecConfig.noncentred``, the default under per-observation priors) is
seen by SVI through ``svi_model``: ``poutine.reparam`` with ``LocScaleReparam(centered=0)`` turns each latent site
``s`` into a standard-normal site ``s_decentered`` and a deterministic ``s = prior std x s_decentered``. Guides are
built on that view and hold the ``_decentered`` values; ``latent_values`` maps them back to the paper's sites.

The sparse Delta guide keeps the per-user table in an ``nn.Embedding(sparse=True)`` that a ``SparseAdam`` updates
row-wise, so a step costs the same at 10k or 2M users (docs/DESIGN.md pitfall 2).

Shape legend: K = domains, J = items, I = distinct item ids, N = users, R = batch users, B = embedding size.
"""

from __future__ import annotations

import itertools

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoGuideList,
    AutoLowRankMultivariateNormal,
    AutoNormal,
    init_to_mean,
    init_to_value,
)
from pyro.infer.reparam import LocScaleReparam
from torch import Tensor, nn

from prerec_pyro.data.batches import PreRecBatch
from prerec_pyro.models.prerec import EPS_U, EPS_V, EPS_V_SHARED, EPS_Z, LATENT_SITES, D, PreRecModel

GUIDES = ("delta", "normal", "structured", "sparse-delta")
INIT_SCALE = 0.01  # initial posterior std of the variational guides, in guide-site units
VARIATIONAL = ("normal", "structured")
# Adam moves an unconstrained scale by about its learning rate per step: from INIT_SCALE to the prior's std is ~5
# units, so at the networks' 1e-3 the scales never leave their start (docs/DESIGN.md, "Variational guides").
SCALE_LR = 0.1

_GUIDE_NUMBERS = itertools.count()
DECENTERED = "{}_decentered"  # LocScaleReparam's name for the standard-normal site behind a non-centred site


def svi_model(model: PreRecModel):
    """The model as SVI fits it: ``model`` itself, or its non-centred view (every latent site through
    ``LocScaleReparam(centered=0)``) when ``model.config.noncentred``."""
    if not model.config.noncentred:
        return model
    return poutine.reparam(model, config={site: LocScaleReparam(centered=0.0) for site in LATENT_SITES})


def guide_site(model: PreRecModel, site: str) -> str:
    """The name under which a guide of ``model`` holds latent site ``site``."""
    return DECENTERED.format(site) if model.config.noncentred else site


def users_plate(model: PreRecModel):
    """``create_plates`` for autoguides: the model's ``users`` plate subsampled to the batch's users."""

    def create_plates(batch: PreRecBatch):
        return pyro.plate("users", model.n_users, subsample=batch.user_index, dim=-1, device=batch.items.device)

    return create_plates


class SparseDeltaGuide(nn.Module):
    """Point estimates (MAP) of D, eps_v_shared, eps_v, eps_z (dense tables) and eps_u (a sparse embedding
    table)."""

    def __init__(self, model: PreRecModel):
        super().__init__()
        self._model = (model,)  # not a submodule: the model's nets are trained through the model
        cfg, hidden = model.config, model.config.hidden_dim
        self.domains = nn.Parameter(torch.zeros(model.n_domains, hidden)) if cfg.use_domain else None
        self.eps_v = nn.Parameter(torch.zeros(model.n_items, hidden)) if cfg.use_offsets else None
        shared = cfg.shared_item_offsets
        self.eps_v_shared = nn.Parameter(torch.zeros(model.n_item_keys, hidden)) if shared else None
        use_z = cfg.use_offsets and cfg.use_popularity
        self.eps_z = nn.Parameter(torch.zeros(model.n_items, hidden)) if use_z else None
        self.eps_u = nn.Embedding(model.n_users, hidden, sparse=True) if cfg.use_offsets else None
        if self.eps_u is not None:
            nn.init.zeros_(self.eps_u.weight)

    def sparse_parameters(self) -> list[Tensor]:
        return [] if self.eps_u is None else [self.eps_u.weight]

    def dense_parameters(self) -> list[Tensor]:
        return [p for p in (self.domains, self.eps_v_shared, self.eps_v, self.eps_z) if p is not None]

    def forward(self, batch: PreRecBatch) -> dict[str, Tensor]:
        model, device, values = self._model[0], batch.items.device, {}
        if self.domains is not None:
            with pyro.plate("domains", model.n_domains, dim=-1, device=device):
                values[D] = self._point(D, self.domains)  # [K, B]
        if self.eps_v_shared is not None:
            with pyro.plate("item_ids", model.n_item_keys, dim=-1, device=device):
                values[EPS_V_SHARED] = self._point(EPS_V_SHARED, self.eps_v_shared)  # [I, B]
        with pyro.plate("items", model.n_items, dim=-1, device=device):
            if self.eps_z is not None:
                values[EPS_Z] = self._point(EPS_Z, self.eps_z)  # [J, B]
            if self.eps_v is not None:
                values[EPS_V] = self._point(EPS_V, self.eps_v)  # [J, B]
        if self.eps_u is not None:
            with pyro.plate("users", model.n_users, subsample=batch.user_index, dim=-1, device=device):
                values[EPS_U] = self._point(EPS_U, self.eps_u(batch.user_index))  # [U, B]
        return values

    def _point(self, site: str, value: Tensor) -> Tensor:
        """A Delta at ``value`` for ``site`` (its ``_decentered`` twin when the model is non-centred)."""
        name = guide_site(self._model[0], site)
        return pyro.sample(name, dist.Delta(value).to_event(1))

    def median(self, batch: PreRecBatch) -> dict[str, Tensor]:
        with torch.no_grad(), pyro.poutine.block():
            return {guide_site(self._model[0], site): value.detach() for site, value in self(batch).items()}


def make_guide(kind: str, model: PreRecModel, name: str = "guide", init_values: dict[str, Tensor] | None = None):
    """Build a guide by name (``delta``, ``normal``, ``structured``, ``sparse-delta``).

    ``init_values``: initial values of global latent sites by the paper's names (e.g. ``{"eps_v_shared": [I, B]}``);
    every other site starts at its prior mean.

    An autoguide is a PyroModule: it reads its values from the parameter store under its own name. Each guide is
    therefore named ``<name>-<n>`` with a number unique in the process, so a pre-training guide, a fine-tuning guide
    and a guide still scoring after another was trained never share parameter-store entries (docs/DESIGN.md
    pitfall 8)."""
    plates = users_plate(model) if model.config.use_offsets else None  # PreRec_n has no user offsets
    start = guide_init_values(model, init_values or {})
    init = init_to_value(values=start, fallback=init_to_mean) if start else init_to_mean
    if kind == "delta":
        guide = AutoDelta(svi_model(model), init_loc_fn=init, create_plates=plates)
    elif kind == "normal":
        guide = AutoNormal(svi_model(model), init_loc_fn=init, init_scale=INIT_SCALE, create_plates=plates)
    elif kind == "structured":
        guide = structured_guide(model, init, plates, f"{name}-{next(_GUIDE_NUMBERS)}")
    elif kind == "sparse-delta":
        guide = SparseDeltaGuide(model).to(model.item_text.device)  # its tables live where the model does
        with torch.no_grad():
            for site in init_values or {}:  # its tables hold the guide-site values too
                getattr(guide, {D: "domains"}.get(site, site)).copy_(start[guide_site(model, site)])
        return guide
    else:
        raise ValueError(f"unknown guide {kind!r}; expected one of {GUIDES}")
    if kind != "structured":  # named before its parts were added, which take their names from it
        guide._pyro_name = f"{name}-{next(_GUIDE_NUMBERS)}"
    return guide


def structured_guide(model: PreRecModel, init, plates, name: str) -> AutoGuideList:
    """A low-rank multivariate normal over D (all domains jointly) and AutoNormal over every other site; ``name``
    is the list's parameter-store name (its parts are ``<name>.0``, ``<name>.1``)."""
    if not model.config.use_domain:
        raise ValueError("the structured guide puts a low-rank posterior on D; this model (PreRec_n) has no D: use "
                         "--guide normal")
    fitted, domain_site = svi_model(model), guide_site(model, D)
    guide = AutoGuideList(fitted, create_plates=plates)
    guide._pyro_name = name
    guide.append(AutoLowRankMultivariateNormal(poutine.block(fitted, expose=[domain_site]), init_loc_fn=init,
                                               init_scale=INIT_SCALE))
    guide.append(AutoNormal(poutine.block(fitted, hide=[domain_site]), init_loc_fn=init, init_scale=INIT_SCALE))
    # the parts use the list's plates (its create_plates), the users plate subsampled to the batch's users
    return guide


def scale_parameters(guide) -> list[Tensor]:
    """The parameters of a variational guide that set its posterior spread (AutoNormal's scales, the low-rank
    factor and diagonal of the structured guide's D); [] for point-estimate guides. They may take their own
    learning rate (``TrainConfig.scale_lr``)."""
    out = []
    for name, parameter in guide.named_parameters():
        parts = name.split(".")
        if "scales" in parts[:-1] or parts[-1] in ("scale", "scale_unconstrained", "cov_factor"):
            out.append(parameter)
    return out


def guide_init_values(model: PreRecModel, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Initial values by guide site name: a non-centred site holds value / prior std."""
    unknown = set(values) - {D, EPS_V_SHARED, EPS_V, EPS_Z}
    if unknown:
        raise ValueError(f"init_values may set the global sites {[D, EPS_V_SHARED, EPS_V, EPS_Z]} only, got "
                         f"{sorted(unknown)}")
    unit = {site: model.prior(site).stddev if model.config.noncentred else 1.0 for site in values}
    return {guide_site(model, site): value / unit[site] for site, value in values.items()}


def check_guide(guide) -> None:
    """Refuse guides whose joint latent cannot follow a subsampled ``users`` plate (docs/DESIGN.md pitfall 7)."""
    if isinstance(guide, AutoContinuous):
        raise ValueError(f"{type(guide).__name__} flattens all latents into one vector sized by the first batch, so "
                         "with the subsampled 'users' plate it would cover one batch of users only; use one of "
                         f"{GUIDES} (or AutoDelta / AutoNormal with create_plates) instead")


def latent_values(guide, batch: PreRecBatch, model: PreRecModel) -> dict[str, Tensor]:
    """The guide's point estimate (MAP value, or posterior median) of every latent site of ``model`` for this batch,
    under the paper's site names (a non-centred ``s_decentered`` is mapped back to ``s = prior std x value``).

    Autoguides' ``median`` returns whole tables, so the user offsets are cut to the batch's users here."""
    with torch.no_grad():
        values = in_site_units(model, {name: value.detach() for name, value in guide.median(batch).items()})
    users = values.get(EPS_U)
    if users is not None and users.shape[0] != len(batch.user_index):
        values[EPS_U] = users[batch.user_index]  # [U, B]
    return values


def latent_draw(guide, batch: PreRecBatch, model: PreRecModel) -> dict[str, Tensor]:
    """One draw of every latent site of ``model`` from the guide for this batch (its users: the batch's), under the
    paper's site names; a point-estimate guide returns its point estimate. Uses the global torch RNG."""
    with torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(batch)
    return in_site_units(model, {name: node["value"].detach() for name, node in trace.nodes.items()
                                 if node["type"] == "sample"})


def domain_draws(model: PreRecModel, guide, batch: PreRecBatch, n_draws: int, seed: int = 0) -> Tensor:
    """``n_draws`` draws of every D_k from the guide (seeded; the global RNG is left as it was). [S, K, B]"""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([latent_draw(guide, batch, model)[D] for _ in range(n_draws)])


def in_site_units(model: PreRecModel, by_guide_site: dict[str, Tensor]) -> dict[str, Tensor]:
    """Values held by a guide (by guide site name) as the paper's sites: a non-centred ``s_decentered`` becomes
    ``s = prior std x value``; names that are no latent site of ``model`` are dropped."""
    values = {site: by_guide_site[guide_site(model, site)] for site in LATENT_SITES
              if guide_site(model, site) in by_guide_site}
    if model.config.noncentred:
        values = {site: value * model.prior(site).stddev for site, value in values.items()}
    return values


def _normal_parts(guide) -> list:
    """The variational parts of a guide: [AutoNormal] or the structured guide's [low-rank MVN, AutoNormal]."""
    parts = list(guide) if isinstance(guide, AutoGuideList) else [guide]
    return [part for part in parts if isinstance(part, (AutoNormal, AutoLowRankMultivariateNormal))]


def guide_moments(guide) -> dict[str, tuple[Tensor, Tensor]]:
    """Posterior mean and standard deviation of every site of a variational guide, by guide site name, in guide
    units (a non-centred site's ``_decentered`` value); {} for point-estimate guides."""
    out = {}
    with torch.no_grad():
        for part in _normal_parts(guide):
            if isinstance(part, AutoNormal):
                for name, loc in part.locs.named_parameters():
                    site = name.removesuffix("_unconstrained")
                    out[site] = (getattr(part.locs, site).detach(), getattr(part.scales, site).detach())
            else:  # the joint posterior's marginals, unpacked site by site
                posterior = part.get_posterior()
                means = dict((site["name"], value) for site, value in part._unpack_latent(posterior.mean))
                stds = dict((site["name"], value) for site, value in part._unpack_latent(posterior.variance.sqrt()))
                out.update({name: (means[name].detach(), stds[name].detach()) for name in means})
    return out


def site_moments(guide, model: PreRecModel) -> dict[str, tuple[Tensor, Tensor]]:
    """``guide_moments`` as the paper's sites, in their units: {site: (mean, std)}; {} for point-estimate guides."""
    moments = guide_moments(guide)
    means = in_site_units(model, {name: mean for name, (mean, _) in moments.items()})
    stds = in_site_units(model, {name: std for name, (_, std) in moments.items()})
    return {site: (means[site], stds[site]) for site in means}


def posterior_spread(guide, model: PreRecModel) -> dict | None:
    """For a guide with a posterior (``normal``, ``structured``): mean posterior standard deviation of each latent
    site beside its prior's, and per domain for D. ``None`` for point-estimate guides."""
    moments = site_moments(guide, model)
    if not moments:
        return None
    out = {}
    for site, (loc, scale) in moments.items():
        prior_std = model.prior(site).stddev  # [B]
        out[site] = {"posterior_std_mean": float(scale.mean()), "prior_std": float(prior_std.mean())}
        if site == D:
            out[D]["posterior_std_per_domain"] = scale.mean(-1).tolist()
            out[D]["posterior_mean_norm_per_domain"] = loc.norm(dim=-1).tolist()
    return out
