"""Full-catalogue evaluation throughput (scored user-item pairs per second) against a bare matrix multiply.

    python benchmarks/bench_eval.py                               # CPU-sized synthetic data, a minute on 2 cores
    python benchmarks/bench_eval.py --device cuda --hidden-dim 256 --heads 4

``evaluate_domain`` (prerec_pyro/evaluate.py) ranks the whole catalogue of one source domain for every evaluated
position (history >= 1) of its ``--split`` users, with PreRec's ``MapScorer`` (the guide's point estimates) and the
zero-shot ``InterventionScorer`` (do(D = 0, eps = 0)), and, where it applies, ``intervention-weighed``: the
default zero-shot scoring (Eq. 8 averaged with Eq. 8 without f_seq, weighed by each history; inference/evidence.py),
which scores every position of a window twice. All run everything evaluation runs: windows, batches with
popularity factors, the causal Transformer, the logits at the target positions and the average ranks.
``map-dense`` (a diagnostic) is ``MapScorer`` ranked from the observed site's [R, L, J] layout, as evaluation did
before it asked for the target positions only; ``intervention-scan`` (another) is the zero-shot scorer finding the
counted (period, item) pairs by scanning the dense [P, J, F] factors instead of the batch's lists of them. Two
floors: the bare matrix multiply of the same shapes, ``[targets, B] @ [B, J]`` (in chunks of the same
``--score-budget``), and ``transformer+matmul``, the text head and the Transformer over the evaluation's batches
and then that matmul (what a plain implementation cannot skip; with a small catalogue the Transformer dominates).
Throughput counts the evaluated (target, item) pairs, targets x J. The model is untrained: throughput does not
depend on the weights.

Prints a table and the ratio of each scorer's time to each floor's; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

import bench_common as bc
import torch

from prerec_pyro import cli
from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.evaluate import EvalConfig, eval_batches, eval_samples, evaluate_domain
from prerec_pyro.inference.evidence import HistoryWeightedSequence, sequence_is_all
from prerec_pyro.inference.guides import make_guide
from prerec_pyro.inference.intervene import InterventionScorer
from prerec_pyro.inference.scoring import MapScorer
from prerec_pyro.models.prerec import PreRecModel

logger = logging.getLogger("bench_eval")
TARGET_RATIO = 2.0  # to the bare matmul, for catalogues of 4,000 items and more
NETWORK_RATIO = 1.5  # to the Transformer + the matmul, for small catalogues (where the Transformer dominates)
DIAGNOSTICS = ("map-dense", "intervention-scan")  # contenders that show what a design choice saves, not targets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=5, warmup=1)
    bc.add_model_args(p)
    bc.add_synthetic_args(p)
    bc.add_config_arg(p)
    p.add_argument("--domain", default=None, help="source domain to evaluate (default: the first)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test", "all"),
                   help="users to evaluate (default: test)")
    p.add_argument("--max-users", type=int, default=None, help="evaluate at most this many users (default: all)")
    p.add_argument("--score-budget", type=int, default=EvalConfig.score_budget,
                   help=f"scores held at once, R*L*J (default: {EvalConfig.score_budget})")
    return p.parse_args(argv)


def build_scorers(args: argparse.Namespace, data, text: torch.Tensor, device: torch.device) -> dict:
    """PreRec's MapScorer (AutoDelta guide, tables created by one call), the zero-shot InterventionScorer (Eq. 8) and
    the default zero-shot scoring, Eq. 8 weighed by each history (``HistoryWeightedSequence``)."""
    config = bc.model_config(args)
    torch.manual_seed(args.seed)
    model = PreRecModel(config, len(data.domains), data.n_fit_users, text.to(device)).to(device)
    guide = make_guide("delta", model, name="bench_eval_guide")
    dom = data.domains[0]
    first = dom.windows(dom.users_in("train")[:4], data.sequences)
    guide(BatchBuilder(data, n_negatives=8, device=device).make(0, first))
    scorers = {"map": MapScorer(model, guide), "intervention": InterventionScorer(model)}
    if not sequence_is_all(config):  # the default zero-shot scoring: Eq. 8 and Eq. 8 without f_seq, weighed
        scorers["intervention-weighed"] = HistoryWeightedSequence(scorers["intervention"])
    return {**scorers, "map-dense": DenseScorer(scorers["map"]),
            "intervention-scan": ScannedFactors(scorers["intervention"])}


class DenseScorer:
    """Diagnostic: ``scorer`` without its ``score_targets``, so the harness ranks the observed site's [R, L, J]
    layout (how evaluation scored before it asked for the target positions only)."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} (dense)"

    def __call__(self, batch) -> torch.Tensor:
        return self.scorer(batch)  # [R, L, J]


class ScannedFactors:
    """Diagnostic: ``scorer`` on batches without the counted (period, item) lists the batch builder takes from the
    popularity table, so the model finds them by scanning the dense [P, J, F] factors (how evaluation read
    popularity before those lists, on the dense grid the batch builder no longer builds)."""

    def __init__(self, scorer):
        self.scorer, self.name = scorer, f"{scorer.name} (scanned factors)"

    def __call__(self, batch) -> torch.Tensor:
        return self.scorer(scanned(batch))  # [R, L, J]

    def score_targets(self, batch) -> torch.Tensor:
        return self.scorer.score_targets(scanned(batch))  # [A, J]


def scanned(batch):
    """``batch`` with its dense [P, J, F] factors and without their counted list (the model scans the grid)."""
    return replace(batch, factors_candidates=batch.candidate_factors(), counted_rows=None)


def score_width(model: PreRecModel) -> int:
    """The width W of a score's product: B, plus the text channel's T in a configuration with it."""
    return model.config.hidden_dim + (model.item_text.shape[1] if model.config.text_channel != "off" else 0)


def transformer_floor(model: PreRecModel, data, domain: int, config: EvalConfig, device: torch.device):
    """The networks a plain implementation cannot skip, then the bare matmul: for the evaluation's own batches
    (built once, untimed), f_e over the history items, the causal Transformer, and the target positions' states
    ``[A, W] @ [W, J]``, W = B plus the text channel's width T in a configuration with it (its cos(X_last, X_j) is
    part of every score)."""
    batches = [batch for _, batch in eval_batches(data, domain, config)]
    hidden, n_items, width = model.config.hidden_dim, data.domains[domain].n_items, score_width(model)
    items = torch.randn(width, n_items, device=device, generator=torch.Generator(device=device).manual_seed(0))

    @torch.no_grad()
    def run() -> None:
        model.eval()
        for batch in batches:
            history = model.f_e(model.item_text[batch.items[:, :-1]])  # [R, L-1, B]
            states = model.f_seq(history.new_zeros(len(history), hidden), history)  # [R, L, B]
            states = states.reshape(-1, hidden)[batch.target_layout()[0]]  # [A, B]
            if width > hidden:
                last = batch.items.reshape(-1)[batch.target_layout()[0]]  # [A]: a stand-in row of the same shape
                states = torch.cat([states, model.item_text[last]], dim=-1)  # [A, B + T]
            states @ items  # [A, J]

    return run


def matmul_floor(n_targets: int, hidden: int, n_items: int, budget: int, device: torch.device):
    """The bare ``[targets, W] @ [W, J]`` (W = ``hidden``: B, plus T with the text channel) in chunks of at most
    ``budget`` scores."""
    generator = torch.Generator(device=device).manual_seed(0)
    users = torch.randn(n_targets, hidden, device=device, generator=generator)  # [T, B]
    items = torch.randn(hidden, n_items, device=device, generator=generator)  # [B, J]
    rows = max(1, budget // n_items)

    def run() -> None:
        for start in range(0, n_targets, rows):
            users[start: start + rows] @ items  # [rows, J]

    return run


def main(args: argparse.Namespace) -> dict:
    device = bc.setup(args)
    data, text = bc.synthetic_sources(args, bc.popularity_mode(args))
    domain = data.index(args.domain) if args.domain else 0
    n_items = data.domains[domain].n_items
    config = EvalConfig(split=args.split, score_budget=args.score_budget, device=args.device,
                        max_users=args.max_users, seed=args.seed)
    windows, mask = eval_samples(data, domain, args.split, args.max_users, args.seed)
    n_targets = int(mask.sum())
    if n_targets == 0:
        raise ValueError(f"domain {data.names[domain]!r} has no evaluated positions among its {args.split!r} users; "
                         "raise --source-users or --mean-seq-len")
    scorers = build_scorers(args, data, text, device)
    runs = {name: (lambda s=scorer: evaluate_domain(s, data, domain, config)) for name, scorer in scorers.items()}
    runs["matmul"] = matmul_floor(n_targets, score_width(scorers["map"].model), n_items, args.score_budget, device)
    runs["transformer+matmul"] = transformer_floor(scorers["map"].model, data, domain, config, device)
    seconds = bc.alternate(runs, args.repeats, args.warmup, device)
    pairs = n_targets * n_items
    results = {name: {"seconds_per_round": values, "seconds": bc.median(values),
                      "pairs_per_s": pairs / bc.median(values)} for name, values in seconds.items()}
    ratios = {name: bc.paired_ratio(seconds[name], seconds["matmul"]) for name in scorers}
    network_ratios = {name: bc.paired_ratio(seconds[name], seconds["transformer+matmul"]) for name in scorers}
    payload = {"benchmark": "eval", "args": vars(args), "environment": bc.environment(device),
               "domain": data.names[domain], "n_items": n_items, "n_targets": n_targets,
               "n_windows": len(windows), "scored_pairs": pairs,
               "window_slots_scored": int(mask.size) * n_items,
               "target_fraction_of_window_slots": n_targets / mask.size,
               "results": results, "ratio_to_matmul": ratios, "ratio_to_transformer_matmul": network_ratios,
               "targets_met": {**{f"{name} / matmul <= {TARGET_RATIO}": ratios[name] <= TARGET_RATIO
                                  for name in ("map", "intervention")},
                               **{f"{name} / (transformer + matmul) <= {NETWORK_RATIO}":
                                  network_ratios[name] <= NETWORK_RATIO
                                  for name in scorers if name not in DIAGNOSTICS}}}
    report(payload)
    if args.out:
        bc.write_json(args.out, payload)
    return payload


def report(payload: dict) -> None:
    floor = payload["results"]["matmul"]["seconds"]
    rows = [{"contender": name, "seconds": r["seconds"], "pairs/s": r["pairs_per_s"], "x matmul": r["seconds"] / floor}
            for name, r in payload["results"].items()]
    print(bc.format_table(rows, ["contender", "seconds", "pairs/s", "x matmul"]))
    print(f"{payload['domain']}: {payload['n_targets']:,} targets x {payload['n_items']:,} items; targets fill "
          f"{payload['target_fraction_of_window_slots']:.3f} of the {payload['n_windows']:,} windows' positions")
    print(f"configuration: {payload['args']['config']}")
    for name, ratio in payload["ratio_to_matmul"].items():
        print(f"{name} vs transformer+matmul: {payload['ratio_to_transformer_matmul'][name]:.2f}x "
              f"(vs bare matmul: {ratio:.2f}x)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())
