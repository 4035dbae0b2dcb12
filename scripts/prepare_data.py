"""Prepare a benchmark: load its domains, encode item texts into the cache, print per-domain statistics.

    python scripts/prepare_data.py                                     # the embedded synthetic benchmark
    python scripts/prepare_data.py --benchmark retail-countries --data-dir ../shared/data
    python scripts/prepare_data.py --download xmarket --data-dir data --markets in es ca au mx de jp
    python scripts/prepare_data.py --download retail --data-dir data

A second run reads the text vectors from the on-disk cache (``$PREREC_CACHE_DIR``, default ~/.cache/prerec_pyro).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd

from prerec_pyro import cli
from prerec_pyro.cli import run
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.data.dataset import SequenceConfig
from prerec_pyro.data.loaders.retail import download_online_retail
from prerec_pyro.data.loaders.xmarket import download_xmarket
from prerec_pyro.pipeline import domain_statistics, prepare_benchmark, text_geometry
from prerec_pyro.text import TextEncoderConfig

logger = logging.getLogger("prepare_data")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR)")
    p.add_argument("--download", default=None, choices=("xmarket", "retail"),
                   help="download the original files into --data-dir (needs internet) instead of preparing")
    p.add_argument("--markets", nargs="+", default=["in", "es", "ca", "au", "mx", "de", "jp"],
                   help="XMarket markets to download (codes or names)")
    p.add_argument("--categories", nargs="+", default=["Electronics"], help="XMarket categories to download")
    p.add_argument("--text-model", default=None, help="sentence-transformers name or path (default: benchmark's)")
    p.add_argument("--max-len", type=int, default=64, help="history length used for the sample counts")
    p.add_argument("--no-encode", action="store_true", help="skip text encoding (statistics only)")
    p.add_argument("--cold-items", type=float, default=0.0,
                   help="fraction of the targets' item ids removed from every source (cold-item protocol)")
    p.add_argument("--cold-seed", type=int, default=0, help="seed of the --cold-items draw")
    return p.parse_args(argv)


def download(args: argparse.Namespace) -> None:
    if not args.data_dir:
        raise ValueError("--download needs --data-dir (where to put the files)")
    root = Path(args.data_dir)
    if args.download == "xmarket":
        paths = download_xmarket(root / "xmarket", args.markets, args.categories)
    else:
        paths = [download_online_retail(root / "online_retail")]
    print("downloaded:", *map(str, paths), sep="\n  ")


def main(args: argparse.Namespace) -> pd.DataFrame | None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.download:
        download(args)
        return None
    started = time.perf_counter()
    text = TextEncoderConfig(model=args.text_model or get_benchmark(args.benchmark).text_model)
    prepared = prepare_benchmark(args.benchmark, args.data_dir, SequenceConfig(max_len=args.max_len), text=text,
                                 cold_items=args.cold_items, cold_seed=args.cold_seed)
    loaded = time.perf_counter()
    if not args.no_encode:
        prepared.item_text(prepared.sources)
        for name in prepared.benchmark.targets:
            prepared.item_text(prepared.target(name))
    encoded = time.perf_counter()
    stats = domain_statistics(prepared)
    cold = f", cold items {prepared.cold_items:g} (seed {prepared.cold_seed})" if prepared.cold_items else ""
    print(f"benchmark {args.benchmark}: K% = {prepared.benchmark.k_percent}{cold}")
    print(stats.to_string(index=False))
    if not args.no_encode:
        print("text geometry (unit vectors as encoded; docs/DESIGN.md, \"Text centred per domain\"):")
        print(text_geometry(prepared).to_string(index=False))
    print(f"load + index: {loaded - started:.1f} s, text vectors: {encoded - loaded:.1f} s")
    return stats


if __name__ == "__main__":
    run(main, parse_args, __file__)
