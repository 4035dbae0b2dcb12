"""What a run's posterior says: domain similarity, calibration, and where the uncertainty is.

- ``domain_similarity``: posterior distances ||D_k - D_l|| between the source domains (mean and a central credible
  interval over draws of the guide) beside the measured Spearman correlation of the two domains' item counts: is the
  learned confounder the real one? (For a point-estimate guide the interval collapses to the MAP distance.)
- ``calibration``: the top next-item prediction's confidence against its correctness on the sources' validation
  users, for MAP (``MapScorer``) and the posterior predictive (``PosteriorScorer``); ECE and reliability bins
  (``prerec_pyro.calibration``), and the held-out log-likelihood of the items that came next.
- ``target_calibration``: the same zero-shot, on the targets' test users: Eq. 8 against the back-door average over
  the posterior of the sources' D_k.
- ``planted_coverage`` (synthetic): how often credible intervals of the predicted next-item probability hold the
  planted one.
- ``item_uncertainty``: the item offsets eps_v with the widest and the narrowest posterior spread, with their
  interaction counts and text: a sanity check a user can read (few interactions should mean wide).
- ``nuts_domain_posterior`` / ``compare_with_gold``: a gold standard for D on a small model (NUTS over D with the
  networks and the other latents fixed) and how far a guide's posterior of D is from it.

Shape legend: S = posterior draws, K = source domains, B = hidden size, J = items, N = evaluated positions.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from torch import Tensor

from prerec_pyro.calibration import expected_calibration_error, reliability_table, top_predictions
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.data.dataset import MultiDomainData
from prerec_pyro.data.synthetic import PlantedTruth, planted_scores
from prerec_pyro.evaluate import EvalConfig, eval_batches
from prerec_pyro.models.prerec import EPS_V, D, R
from prerec_pyro.pipeline import PreparedBenchmark
from prerec_pyro.training import FLAT, loss_trend

from .guides import guide_moments, latent_values, posterior_spread, site_moments
from .pretrained import PretrainedRun
from .scoring import MapScorer, PosteriorScorer

CREDIBLE = 0.9


def popularity_correlation(left: pd.DataFrame, right: pd.DataFrame) -> float:
    """Spearman correlation of two interaction logs' item counts over the union of their items (0 where absent)."""
    counts = pd.concat([left["item_id"].value_counts().rename("left"), right["item_id"].value_counts().rename("right")],
                       axis=1).fillna(0)
    return float(counts["left"].rank().corr(counts["right"].rank()))


def domain_similarity(draws: Tensor, prepared: PreparedBenchmark) -> pd.DataFrame:
    """One row per pair of source domains: posterior distance (mean, credible interval) and the measured item
    popularity rank correlation of their logs."""
    names, low = prepared.benchmark.sources, (1 - CREDIBLE) / 2
    rows = []
    for k, other in combinations(range(len(names)), 2):
        distance = (draws[:, k] - draws[:, other]).norm(dim=-1)  # [S]
        rows.append({"domain": names[k], "other": names[other], "distance_mean": float(distance.mean()),
                     "distance_low": float(distance.quantile(low)), "distance_high": float(distance.quantile(1 - low)),
                     "popularity_spearman": popularity_correlation(prepared.domains[names[k]].interactions,
                                                                   prepared.domains[names[other]].interactions)})
    return pd.DataFrame(rows)


def _predictions(scorer, data: MultiDomainData, domain: int, split: str,
                 max_users: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Confidence and correctness of the top prediction, and the log-probability of the item that came next, at
    every evaluated position of ``domain``'s ``split`` users (the scorer's scores at the targets only). ([N], [N],
    [N])"""
    out = ([], [], [])
    for _, batch in eval_batches(data, domain, EvalConfig(split=split, max_users=max_users)):
        log_probs = torch.log_softmax(scorer.score_targets(batch), -1)  # [A, J]
        targets = batch.layout_targets()  # [A]
        values = (*top_predictions(log_probs, targets), log_probs.gather(1, targets[:, None])[:, 0])
        for part, value in zip(out, values):
            part.append(value)
    return tuple(torch.cat(part) for part in out)


def _calibration_row(scorer, data: MultiDomainData, domain: int, split: str, max_users: int | None,
                     n_bins: int) -> tuple[dict, Tensor, Tensor]:
    confidence, correct, log_lik = _predictions(scorer, data, domain, split, max_users)
    row = {"domain": data.names[domain], "n": len(confidence),
           "ece": expected_calibration_error(confidence, correct, n_bins, "quantile"),
           "mean_confidence": float(confidence.mean()), "accuracy": float(correct.float().mean()),
           "log_lik": float(log_lik.mean())}
    return row, confidence, correct


def calibration(model, guide, prepared: PreparedBenchmark, n_samples: int, max_users: int | None = 200,
                n_bins: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ECE per source domain and scorer on the validation users, reliability bins of every domain's predictions
    pooled, per scorer)."""
    draws = n_samples if guide_moments(guide) else 1  # a point-estimate guide: every draw is the same
    scorers = {"MAP": MapScorer(model, guide), "posterior predictive": PosteriorScorer(model, guide, draws)}
    rows, pooled = [], {name: ([], []) for name in scorers}
    for domain in range(len(prepared.sources.domains)):
        for label, scorer in scorers.items():
            row, confidence, correct = _calibration_row(scorer, prepared.sources, domain, "valid", max_users, n_bins)
            pooled[label][0].append(confidence)
            pooled[label][1].append(correct)
            rows.append({**row, "scorer": label})
    bins = [reliability_table(torch.cat(conf), torch.cat(corr), n_bins, "quantile").assign(scorer=label)
            for label, (conf, corr) in pooled.items()]
    return pd.DataFrame(rows), pd.concat(bins, ignore_index=True)


def target_calibration(run: PretrainedRun, prepared: PreparedBenchmark, n_samples: int,
                       max_users: int | None = 200, n_bins: int = 10) -> pd.DataFrame:
    """Zero-shot calibration on each target's test users: Eq. 8 (do(D = 0)) against the back-door average over
    ``n_samples`` draws of the sources' D_k from the run's posterior (a run without D: Eq. 8 only)."""
    rows = []
    for target in prepared.benchmark.targets:
        data = prepared.target(target)
        scorers = {"Eq. 8": run.target_scorer(prepared, target, weigh_sequence=False)}
        if run.config.model.use_domain:
            scorers["back-door over the posterior D_k"] = run.target_scorer(
                prepared, target, n_samples, backdoor_from="posterior", weigh_sequence=False)
        for label, scorer in scorers.items():
            rows.append({**_calibration_row(scorer, data, 0, "test", max_users, n_bins)[0], "scorer": label})
    return pd.DataFrame(rows)


def planted_coverage(model, guide, prepared: PreparedBenchmark, truth: PlantedTruth, n_samples: int,
                     max_users: int | None = 100, levels: tuple[float, ...] = (0.5, 0.9)) -> pd.DataFrame:
    """On synthetic data: how often the central credible interval (over ``n_samples`` guide draws) of the predicted
    probability of the item that came next holds its planted probability (every planted term, the user's own
    taste included; the planted process never repeats an item, so the user's earlier items get probability 0), at
    the evaluated positions of the sources' validation users. One row per source domain and level."""
    scorer, rows = PosteriorScorer(model, guide, n_samples), []
    for domain, dom in enumerate(prepared.sources.domains):
        predicted, planted = [], []
        for windows, batch in eval_batches(prepared.sources, domain, EvalConfig(split="valid", max_users=max_users)):
            targets = batch.layout_targets()  # [A]
            draws = scorer.log_prob_draws(batch)  # [S, A, J]
            predicted.append(draws.gather(2, targets.expand(len(draws), -1)[..., None])[..., 0].exp())  # [S, A]
            planted.append(_planted_probability(truth, dom, windows, batch.target_layout()[0].cpu().numpy(),
                                                batch.items.shape[1]))
        predicted, planted = torch.cat(predicted, 1), torch.as_tensor(np.concatenate(planted))  # [S, N], [N]
        for level in levels:
            low, high = torch.quantile(predicted, torch.tensor([(1 - level) / 2, (1 + level) / 2]), dim=0)  # [N]
            rows.append({"domain": dom.name, "level": level, "n": len(planted),
                         "coverage": float(((planted >= low) & (planted <= high)).float().mean()),
                         "mean_width": float((high - low).mean()), "planted_mean": float(planted.mean()),
                         "predicted_mean": float(predicted.mean())})
    return pd.DataFrame(rows)


def _planted_probability(truth: PlantedTruth, dom, windows, order: np.ndarray, length: int) -> np.ndarray:
    """The planted probability of the next item at flat positions ``order`` of the windows' batch (trimmed to
    ``length``). [A]"""
    row, position = np.divmod(order, length)
    user = dom.user_ids[windows.user[row]]
    previous = dom.item_ids[windows.items[row, position - 1]]
    logits = planted_scores(truth, dom.name, user, previous, windows.times[row, position])  # [A, J*] truth's order
    logits = logits[:, pd.Index(truth.domain_items[dom.name]).get_indexer(dom.item_ids)]  # [A, J], the domain's
    starts = dom.seq_offsets[windows.user[row]]  # [A]
    for a, (start, seen) in enumerate(zip(starts, windows.position[row, position])):
        logits[a, dom.seq_items[start: start + seen]] = -np.inf  # chosen without repeats
    logits -= logits.max(1, keepdims=True)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probabilities[np.arange(len(order)), windows.items[row, position]]


def convergence(history: list[dict], model, guide, window: int = 10) -> pd.DataFrame:
    """Whether a run's fit has settled, as (quantity, value) rows: epochs run, the last training loss (-ELBO per
    observation), its fitted relative change per epoch over the last ``window`` epochs (``prerec_pyro.training.
    loss_trend``) and whether that is flat, then each latent site's posterior std over its prior std (where the
    guide has scales)."""
    trend = loss_trend(history, window)
    rows = [("epochs run", len(history)), ("training loss, last epoch", history[-1]["loss"] if history else None)]
    if trend is not None:
        first, last = trend["epochs"]
        rows += [(f"loss change per epoch, epochs {first}-{last}", trend["relative_change_per_epoch"]),
                 (f"flat (|change| < {FLAT:.1%} an epoch)", trend["flat"])]
    for site, spread in (posterior_spread(guide, model) or {}).items():
        rows.append((f"posterior std / prior std, {site}", spread["posterior_std_mean"] / spread["prior_std"]))
    return pd.DataFrame(rows, columns=["quantity", "value"])


def item_uncertainty(model, guide, prepared: PreparedBenchmark, top: int = 10) -> pd.DataFrame:
    """The ``top`` item offsets (eps_v) with the widest and the narrowest posterior spread (mean std over B, in the
    site's units), with their domain, interaction count and text; empty for a point-estimate guide."""
    moments = site_moments(guide, model)
    if EPS_V not in moments:
        return pd.DataFrame()
    spread = moments[EPS_V][1].mean(-1)  # [J]
    catalogue = [pd.DataFrame({"domain": dom.name, "item_id": dom.item_ids, "text": dom.texts,
                               "interactions": np.bincount(dom.seq_items, minlength=dom.n_items)})
                 for dom in prepared.sources.domains]  # global row order, as eps_v's rows
    table = pd.concat(catalogue, ignore_index=True).assign(posterior_std=spread.cpu().numpy())
    table = table.sort_values("posterior_std", ascending=False, kind="stable")
    return pd.concat([table.head(top).assign(end="widest"), table.tail(top).assign(end="narrowest")],
                     ignore_index=True)


def _domain_model(model, batches: list, fixed: list[dict[str, Tensor]]):
    """p(D | the batches' next items) with the networks and every other latent held at ``fixed`` (one dict of
    paper-site values per batch): D drawn once from its prior, each batch's likelihood counted once (every latent
    site of the per-batch calls hidden, so only the next items R score D)."""
    from pyro.contrib.autoname import scope

    def conditional():
        with pyro.plate("domains", model.n_domains, dim=-1):
            domains = pyro.sample(D, model.prior(D))  # [K, B]
        for index, (batch, values) in enumerate(zip(batches, fixed)):
            call = poutine.condition(model, data={**values, D: domains})
            with scope(prefix=f"batch{index}"), poutine.block(hide_fn=lambda msg: msg["name"].split("/")[-1] != R):
                call(batch)

    return conditional


def nuts_domain_posterior(model, guide, batches: list, n_samples: int, warmup: int, seed: int = 0,
                          max_tree_depth: int = 6) -> Tensor:
    """A gold standard for the posterior of D: NUTS (``pyro.infer.MCMC``) over D alone, the networks fixed at the
    run's values and every other latent at the guide's point estimate, on ``batches`` (e.g. every training window
    of each source domain, ``n_sequences`` = its rows so nothing is rescaled). [S, K, B]"""
    fixed = [{site: value for site, value in latent_values(guide, batch, model).items() if site != D}
             for batch in batches]
    model.eval()
    pyro.set_rng_seed(seed)
    kernel = NUTS(_domain_model(model, batches, fixed), adapt_step_size=True, max_tree_depth=max_tree_depth)
    mcmc = MCMC(kernel, num_samples=n_samples, warmup_steps=warmup, disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()[D].detach()  # [S, K, B]


def compare_with_gold(gold: Tensor, loc: Tensor, scale: Tensor, prior_std: Tensor) -> dict[str, float]:
    """How a variational posterior N(loc, scale²) of D [K, B] (site units) sits against NUTS draws ``gold``
    [S, K, B]: mean |mean difference| in prior stds, mean std ratio (guide / gold), and the mean per-dimension
    KL(gold || guide) of the Gaussians with the gold draws' moments (inf for a point estimate)."""
    mean, std = gold.mean(0), gold.std(0)  # [K, B]
    kl = (scale / std).log() + (std ** 2 + (mean - loc) ** 2) / (2 * scale ** 2) - 0.5  # [K, B]
    return {"mean_error_in_prior_stds": float(((mean - loc).abs() / prior_std).mean()),
            "std_ratio": float((scale / std).mean()), "kl_gold_to_guide": float(kl.mean()),
            "gold_std_over_prior": float((std / prior_std).mean())}


def gold_comparison(model, guide, prepared: PreparedBenchmark, n_samples: int, warmup: int,
                    max_users: int | None = 50) -> pd.DataFrame:
    """NUTS over D on the training windows of (at most ``max_users``) users of each source domain, set against the
    guide's posterior of D: one row (``compare_with_gold``; a point-estimate guide has no spread to compare)."""
    data, builder = prepared.sources, BatchBuilder(prepared.sources, None)
    batches = [builder.make(k, dom.windows(dom.users_in("train")[:max_users], data.sequences))
               for k, dom in enumerate(data.domains)]
    gold = nuts_domain_posterior(model, guide, batches, n_samples, warmup)  # [S, K, B]
    prior_std = model.prior(D).stddev  # [B]
    moments = site_moments(guide, model).get(D)
    if moments is None:
        loc = latent_values(guide, batches[0], model)[D]
        row = {"mean_error_in_prior_stds": float(((gold.mean(0) - loc).abs() / prior_std).mean()),
               "gold_std_over_prior": float((gold.std(0) / prior_std).mean())}
    else:
        row = compare_with_gold(gold, *moments, prior_std)
    return pd.DataFrame([{"nuts_samples": n_samples, "warmup": warmup, **row}])
