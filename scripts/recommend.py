"""Top-k zero-shot recommendations of a pre-trained run for the users of your own catalogue.

    python scripts/recommend.py --run runs/retail-countries/prerec-delta-seed0-... --items items.csv \\
        --histories histories.csv --interactions recent.csv --k 10 --out recs

``--items``: item_id, text (CSV or parquet). ``--histories``: user_id, item_id, timestamp (the generic interactions
format); each user's items in time order are the history. ``--interactions`` (optional): item_id, timestamp of
recent activity in the catalogue, for the popularity factors of the interval before ``--now``. Writes one row per
user and rank: user_id, rank, item_id, score.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd
import torch

from prerec_pyro import cli
from prerec_pyro.api import UNKNOWN, PretrainedRun
from prerec_pyro.cli import run
from prerec_pyro.data.loaders.generic import INTERACTION_COLUMNS, ITEM_COLUMNS, read_table, rows_of_domain
from prerec_pyro.data.timestamps import epoch_seconds
from prerec_pyro.inference.pretrained import BACKDOOR_FROM
from prerec_pyro.io import write_csv
from prerec_pyro.progress import progress_bar

logger = logging.getLogger("recommend")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--run", required=True, help="a pre-training run directory (scripts/map_pretrain.py)")
    p.add_argument("--items", required=True, help="the catalogue: item_id, text (.csv or .parquet)")
    p.add_argument("--histories", required=True, help="user_id, item_id, timestamp (.csv or .parquet)")
    p.add_argument("--interactions", default=None, help="recent item_id, timestamp rows for popularity (optional)")
    p.add_argument("--now", default=None, help="time of the recommendation (default: the latest recent interaction)")
    p.add_argument("--target", "--domain", dest="domain", default=None,
                   help="with a 'domain' column in the tables: the domain to recommend in (items with an empty "
                        "domain belong to every domain)")
    p.add_argument("--date-format", default=None, help="strftime format of the timestamps (e.g. %%d/%%m/%%Y)")
    p.add_argument("--k", type=int, default=10, help="items per user")
    p.add_argument("--include-seen", action="store_true", help="also recommend items of the user's own history")
    p.add_argument("--unknown", default="error", choices=UNKNOWN,
                   help="history items missing from the catalogue: stop with an error, or drop them with a warning "
                        "(a user left with none gets no recommendations, named in the warning)")
    p.add_argument("--batch-users", type=int, default=1024, help="users scored at once")
    p.add_argument("--samples", type=int, default=0,
                   help="back-door draws of D instead of Eq. 8's do(D = 0) (0, the default: do(D = 0))")
    p.add_argument("--backdoor-from", default="prior", choices=BACKDOOR_FROM,
                   help="with --samples: D from its prior, or from the run's posterior of the sources' D_k")
    cli.add_weigh_sequence(p)
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--out", required=True, help="output folder: recommendations.csv is written there (atomically)")
    args = p.parse_args(argv)
    if args.k < 1 or args.batch_users < 1 or args.samples < 0:
        p.error(f"--k and --batch-users must be >= 1 and --samples >= 0, got {args.k}, {args.batch_users}, "
                f"{args.samples}")
    return args


def read_log(path: str, domain: str | None, date_format: str | None,
             columns: tuple[str, ...] = INTERACTION_COLUMNS) -> pd.DataFrame:
    """A log's rows (of ``domain``), timestamps as epoch seconds."""
    log = rows_of_domain(read_table(path, columns), domain, path, shared_rows=False)
    log["timestamp"] = epoch_seconds(log["timestamp"], path, date_format)
    return log


def read_histories(path: str, domain: str | None = None, date_format: str | None = None) -> dict[str, list[str]]:
    """user_id -> item ids in time order (ties keep file order)."""
    log = read_log(path, domain, date_format).sort_values(["user_id", "timestamp"], kind="stable")
    return {user: list(items) for user, items in log.groupby("user_id", sort=False)["item_id"]}


def main(args: argparse.Namespace):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = PretrainedRun.load(args.run, device=args.device)
    items = rows_of_domain(read_table(args.items, ITEM_COLUMNS), args.domain, args.items, shared_rows=True)
    recent = read_log(args.interactions, args.domain, args.date_format, ("item_id", "timestamp")) \
        if args.interactions else None
    domain = run.on_domain(items, recent_interactions=recent, now=args.now, samples=args.samples,
                           backdoor_from=args.backdoor_from, weigh_sequence=args.weigh_sequence,
                           sequence_evidence=args.sequence_evidence)
    histories = read_histories(args.histories, args.domain, args.date_format)
    users = list(histories)
    parts = []
    for start in progress_bar(range(0, len(users), args.batch_users), desc="recommending", unit="batch"):
        chunk = {user: histories[user] for user in users[start: start + args.batch_users]}
        parts.append(domain.recommend(chunk, k=args.k, exclude_seen=not args.include_seen, unknown=args.unknown))
    table = pd.concat(parts, ignore_index=True)
    path = Path(args.out) / "recommendations.csv"
    write_csv(path, table)
    print(f"{len(users)} users, top {args.k}: {path}")
    return table


if __name__ == "__main__":
    run(main, parse_args, __file__)
