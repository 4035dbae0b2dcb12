"""Recommendation throughput (histories per second) of the public API against the bare scoring matmul.

    python benchmarks/bench_recommend.py --threads 1                   # 10,000 histories, 4,000 items, CPU
    python benchmarks/bench_recommend.py --device cuda --hidden-dim 256 --heads 4

``DomainRecommender.recommend`` (prerec_pyro/api.py, what ``scripts/recommend.py`` and ``scripts/serve.py`` call)
returns the top-k items for each history: it maps item ids to rows, builds one batch a chunk of histories, scores
the whole catalogue through the ``poutine.do`` intervention of Eq. 8 (the causal Transformer, the popularity and
text parts of V) and sorts. Two floors are timed beside it in the same process: ``matmul``, the bare
``[histories, B] @ [B, J]``, and ``transformer+matmul``, the model's own Transformer over the histories' text
embeddings plus that matmul (at small catalogues the Transformer, not the scoring, is the bound). The model is
untrained (the default configuration: per-observation priors, shared item offsets, last-item skip): throughput does
not depend on the weights. Histories are drawn uniformly with lengths 1..``--max-history``.
"""

from __future__ import annotations

import argparse
import logging

import bench_common as bc
import numpy as np
import torch

from prerec_pyro import cli
from prerec_pyro.api import DomainRecommender
from prerec_pyro.inference.evidence import HistoryWeightedSequence
from prerec_pyro.models.prerec import PreRecConfig, PreRecModel

logger = logging.getLogger("bench_recommend")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=3, warmup=1)
    bc.add_model_args(p)
    p.add_argument("--histories", type=int, default=10_000, help="histories to recommend for (default: 10,000)")
    p.add_argument("--items", type=int, default=4_000, help="catalogue size (default: 4,000)")
    p.add_argument("--max-history", type=int, default=50, help="longest history in items (default: 50)")
    p.add_argument("--k", type=int, default=10, help="items per history (default: 10)")
    p.add_argument("--text-dim", type=int, default=384, help="text vector size (default: 384, MiniLM's)")
    p.add_argument("--batch-size", type=int, default=256, help="histories scored at once (default: 256)")
    args = p.parse_args(argv)
    if min(args.histories, args.items, args.max_history, args.k, args.batch_size) < 1:
        p.error("--histories, --items, --max-history, --k and --batch-size must be >= 1")
    return args


def build(args: argparse.Namespace, device: torch.device) -> tuple[DomainRecommender, list[list[str]]]:
    """An untrained model over a random catalogue, and random histories of its item ids."""
    generator = torch.Generator().manual_seed(args.seed)
    text = torch.randn(args.items, args.text_dim, generator=generator)  # [J, T]
    config = PreRecConfig.recommended(hidden_dim=args.hidden_dim, n_layers=args.layers, n_heads=args.heads,
                                      max_len=args.max_history + 1, transformer_dtype=args.transformer_dtype)
    model = PreRecModel(config, 1, 1, text.to(device)).to(device)
    ids = np.array([f"item{j}" for j in range(args.items)], dtype=object)
    factors = torch.rand(1, args.items, config.n_factors, generator=generator).to(device)  # [1, J, F]
    recommender = DomainRecommender(model, ids, factors)
    rng = np.random.default_rng(args.seed)
    histories = [list(ids[rng.integers(0, args.items, rng.integers(1, args.max_history + 1))])
                 for _ in range(args.histories)]
    return recommender, histories


def floors(recommender: DomainRecommender, histories: list[list[str]], batch_size: int, device: torch.device):
    """The bare matmul and the Transformer + matmul over the same histories, chunk by chunk."""
    model = recommender.model
    hidden = model.config.hidden_dim
    items = torch.randn(hidden, len(recommender.item_ids), device=device)  # [B, J]
    rows = recommender.rows(histories)
    chunks = [rows[i: i + batch_size] for i in range(0, len(rows), batch_size)]
    padded = []
    for chunk in chunks:
        length = max(len(r) for r in chunk)
        tokens = torch.zeros(len(chunk), length, dtype=torch.long, device=device)  # [R, L]
        for r, history in enumerate(chunk):
            tokens[r, : len(history)] = torch.as_tensor(history, device=device)
        padded.append(tokens)

    def matmul() -> None:
        for tokens in padded:
            torch.randn(len(tokens), hidden, device=device) @ items  # [R, J]

    @torch.no_grad()
    def transformer_matmul() -> None:
        model.eval()
        for tokens in padded:
            history = model.f_e(model.item_text[tokens])  # [R, L, B]
            states = model.f_seq(torch.zeros(len(tokens), hidden, device=device), history)  # [R, L+1, B]
            states[:, -1] @ items  # [R, J]

    return {"matmul": matmul, "transformer+matmul": transformer_matmul}


def main(args: argparse.Namespace) -> dict:
    device = bc.setup(args)
    recommender, histories = build(args, device)
    weighed = DomainRecommender(recommender.model, recommender.item_ids, recommender.factors)
    weighed.scorer = HistoryWeightedSequence(recommender.scorer)  # what recommend.py and serve.py use by default
    runs = {"recommend": lambda: recommender.recommend(histories, k=args.k),
            "recommend, weighed": lambda: weighed.recommend(histories, k=args.k)}
    runs.update(floors(recommender, histories, args.batch_size, device))
    seconds = bc.alternate(runs, args.repeats, args.warmup, device)
    results = {name: {"seconds_per_round": values, "seconds": bc.median(values),
                      "histories_per_s": args.histories / bc.median(values)} for name, values in seconds.items()}
    ratios = {floor: bc.paired_ratio(seconds["recommend"], seconds[floor])
              for floor in ("matmul", "transformer+matmul")}
    weighed_ratio = bc.paired_ratio(seconds["recommend, weighed"], seconds["recommend"])
    payload = {"benchmark": "recommend", "args": vars(args), "environment": bc.environment(device),
               "results": results, "recommend_ratio_to": ratios,
               "weighed_vs_eq8": weighed_ratio}
    rows = [{"contender": name, "seconds": r["seconds"], "histories/s": r["histories_per_s"]}
            for name, r in results.items()]
    print(bc.format_table(rows, ["contender", "seconds", "histories/s"]))
    print(f"{args.histories:,} histories x {args.items:,} items, top {args.k}")
    for floor, ratio in ratios.items():
        print(f"recommend vs {floor}: {ratio:.1f}x")
    print(f"recommend, weighed (the default of recommend.py and serve.py) vs Eq. 8 alone: {weighed_ratio:.2f}x")
    if args.out:
        bc.write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())
