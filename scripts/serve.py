"""Serve zero-shot recommendations of a pre-trained run over HTTP (needs the serve extra: pip install -e ".[serve]").

    python scripts/serve.py --run runs/retail-countries/prerec-delta-seed0-... --items items.csv \\
        --interactions recent.csv --port 8000
    curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"history": ["85123A"], "k": 5}'

Endpoints: ``POST /recommend`` and ``GET /health`` (prerec_pyro/serve.py).
"""

from __future__ import annotations

import argparse
import logging

import torch

from prerec_pyro import cli
from prerec_pyro.api import PretrainedRun
from prerec_pyro.cli import run
from prerec_pyro.data.loaders.generic import ITEM_COLUMNS, read_table, rows_of_domain


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--run", required=True, help="a pre-training run directory (scripts/map_pretrain.py)")
    p.add_argument("--items", required=True, help="the catalogue: item_id, text (.csv or .parquet)")
    p.add_argument("--interactions", default=None, help="recent item_id, timestamp rows for popularity (optional)")
    p.add_argument("--target", "--domain", dest="domain", default=None,
                   help="with a 'domain' column in --items: the domain to serve (its items and those with an empty "
                        "domain)")
    p.add_argument("--now", default=None, help="time of the recommendations (default: the latest recent interaction)")
    p.add_argument("--date-format", default=None, help="strftime format of the timestamps (e.g. %%d/%%m/%%Y)")
    cli.add_weigh_sequence(p)
    p.add_argument("--max-k", type=int, default=100, help="the largest k a request may ask for")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)
    if args.max_k < 1:
        p.error(f"--max-k must be >= 1, got {args.max_k}")
    return args


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvicorn

        from prerec_pyro.serve import create_app
    except ModuleNotFoundError as error:
        raise ValueError(f"{error.name} is not installed: pip install -e '.[serve]'") from None
    items = rows_of_domain(read_table(args.items, ITEM_COLUMNS), args.domain, args.items, shared_rows=True)
    recent = None
    if args.interactions:
        recent = rows_of_domain(read_table(args.interactions, ("item_id", "timestamp")), args.domain,
                                args.interactions, shared_rows=False)
    recommender = PretrainedRun.load(args.run, device=args.device).on_domain(
        items, recent_interactions=recent, now=args.now, date_format=args.date_format,
        weigh_sequence=args.weigh_sequence, sequence_evidence=args.sequence_evidence)
    uvicorn.run(create_app(recommender, max_k=args.max_k), host=args.host, port=args.port)


if __name__ == "__main__":
    run(main, parse_args, __file__)
