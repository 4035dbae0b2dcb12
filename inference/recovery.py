"""Does MAP recover what the synthetic benchmark planted? Domain tastes and the popularity effect.

- Domain taste: the learned D_k enters the scores only through f_seq's first token (Fig. 1 of the paper), so its
  *implied taste* is the user state of an empty history, n_k = f_seq(D_k, ∅), scored against every item's text
  embedding: taste_k(j) = n_k · f_e(X_j). The planted taste is D*_k · m*_j. ``taste_correlations`` gives the Spearman
  correlation of learned domain k with planted domain k' over the sources' items, each taste centred on the mean
  over domains (what sets a domain apart); recovery means the
  diagonal (matching domains) stands clearly above the off-diagonal pairs.
- Popularity: the learned popularity score of item j in interval l is Z_j(l)·(W_z + ū_k), the part of the logit
  that Z carries for an average user state ū_k of the domain; it is rank-correlated with the planted
  log-popularity of (l, j) over the intervals after the first.

Shape legend: K = domains, J = items, P = periods, B = embedding size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.data.synthetic import PlantedTruth
from prerec_pyro.models.prerec import EPS_Z, D, PreRecModel


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


@torch.no_grad()
def learned_tastes(model: PreRecModel, domains: torch.Tensor, data: MultiDomainData) -> pd.DataFrame:
    """taste_k(j) = f_seq(D_k, ∅) · f_e(X_j) for every learned domain k and every item id of ``data``. [J, K]"""
    model.eval()
    empty = domains.new_zeros(domains.shape[0], 0, domains.shape[1])  # [K, 0, B]
    state = model.f_seq(domains, empty)[:, 0]  # [K, B]
    embeddings = model.f_e(model.item_text)  # [J, B]
    ids = np.concatenate([d.item_ids for d in data.domains])
    table = pd.DataFrame((embeddings @ state.T).cpu().numpy(), index=ids, columns=data.names)
    return table[~table.index.duplicated()]


def planted_tastes(truth: PlantedTruth, names: list[str]) -> pd.DataFrame:
    """D*_k · m*_j for every pool item and every domain in ``names``. [J_pool, K]"""
    vectors = truth.item_vectors  # [J_pool, latent]
    return pd.DataFrame({name: vectors @ truth.domain_vectors[name] for name in names}, index=truth.item_ids)


def taste_correlations(model: PreRecModel, values: dict, data: MultiDomainData, truth: PlantedTruth) -> pd.DataFrame:
    """Spearman correlation of learned (rows) and planted (columns) domain-specific tastes over every item of
    the domains: each taste minus the mean taste of all domains for that item (what sets domain k apart)."""
    learned = learned_tastes(model, values[D], data)
    planted = planted_tastes(truth, data.names).loc[learned.index]
    learned = learned.sub(learned.mean(axis=1), axis=0)
    planted = planted.sub(planted.mean(axis=1), axis=0)
    out = pd.DataFrame(index=data.names, columns=data.names, dtype=float)
    for row in data.names:
        for col in data.names:
            out.loc[row, col] = spearman(learned[row].to_numpy(), planted[col].to_numpy())
    return out


@torch.no_grad()
def popularity_scores(model: PreRecModel, values: dict, data: MultiDomainData, domain: int,
                      periods: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Learned popularity score Z_j(l)·(W_z + ū_k) and the factors F of every item at ``periods``.
    Returns ([P, J], [P, J, F])."""
    model.eval()
    dom = data.domains[domain]
    batch = BatchBuilder(data, n_negatives=None).make(domain, dom.windows(dom.users_in("valid")[:200],
                                                                         data.sequences))
    latent = {name: values.get(name) for name in (D, "eps_v", EPS_Z)} | {"eps_u": None}
    mean_user = model.user_state(batch, latent)[batch.target_mask].mean(0)[:model.config.hidden_dim]  # [B]
    items = torch.arange(dom.n_items)  # [J]
    factors = dom.popularity.factors(periods, items)  # [P, J, F]
    z = model.popularity_parts(items + int(data.item_offsets[domain]), factors, latent)  # [P, J, B]
    return (z @ (model.w_z + mean_user)).cpu().numpy(), factors.cpu().numpy()


def popularity_recovery(model: PreRecModel, values: dict, data: MultiDomainData, truth: PlantedTruth) -> pd.Series:
    """Per domain: Spearman(learned popularity score, planted log-popularity) over (interval >= 1, item)."""
    out = {}
    for k, dom in enumerate(data.domains):
        n_intervals = truth.log_popularity[dom.name].shape[0]
        score, _ = popularity_scores(model, values, data, k, torch.arange(1, n_intervals))  # [P, J]
        order = pd.Index(truth.domain_items[dom.name]).get_indexer(dom.item_ids)  # our items in truth's order
        planted = truth.log_popularity[dom.name][1:][:, order]  # [P, J]
        out[dom.name] = spearman(score.ravel(), planted.ravel())
    return pd.Series(out)


def popularity_panel(model: PreRecModel, values: dict, data: MultiDomainData, domain: int) -> dict:
    """The data of one row of the popularity figure (Fig. 5) for ``domain``."""
    dom = data.domains[domain]
    periods_of_log = dom.popularity.period_of(dom.seq_times)
    traffic = np.bincount(periods_of_log - periods_of_log.min())
    periods = torch.arange(int(periods_of_log.min()) + 1, int(periods_of_log.max()) + 1)
    score, factors = popularity_scores(model, values, data, domain, periods)
    seen = factors[..., 0] > 0
    return {"domain": dom.name, "traffic": traffic, "f1": factors[..., 0][seen], "f2": factors[..., 1][seen],
            "score": score[seen]}
