"""Text encoding throughput (texts per second) of ``prerec_pyro.text.encode_texts``, cold and cached.

    python benchmarks/bench_encode.py                           # MiniLM and hash-bow on 2,000 texts, ~1 min on 2 cores
    python benchmarks/bench_encode.py --device cuda --n-texts 20000

The texts are distinct synthetic product titles (prerec_pyro.data.synthetic). For each encoder, every round calls
``encode_texts`` twice with a fresh empty temporary cache folder: ``cold`` (every text encoded and written as a
shard) and ``cached`` (every vector read back from the shard). Loading the model happens once before the rounds and
is reported apart (``load_s``). Encoders alternate within a round. Prints a table; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import bench_common as bc
import numpy as np

from prerec_pyro import cli
from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic
from prerec_pyro.text import TextEncoderConfig, encode_texts, load_encoder

logger = logging.getLogger("bench_encode")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    bc.add_common_args(p, repeats=3, warmup=0)
    p.add_argument("--n-texts", type=int, default=2000, help="distinct texts to encode (default: 2000)")
    p.add_argument("--models", default="all-MiniLM-L6-v2,hash-bow-384",
                   help="comma-separated encoder names (default: all-MiniLM-L6-v2,hash-bow-384)")
    p.add_argument("--batch-size", type=int, default=128, help="texts per forward pass (default: 128)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        p.error("--models: expected at least one encoder name")
    if args.n_texts < 2:
        p.error(f"--n-texts must be >= 2, got {args.n_texts}")
    return args


def synthetic_texts(n_texts: int, seed: int) -> list[str]:
    """``n_texts`` distinct product titles: one tiny synthetic domain whose catalogue is the whole item pool."""
    config = SyntheticConfig(n_pool_items=n_texts, items_per_domain=n_texts, unique_items_per_domain=0,
                             source_users=1, target_users=1, min_seq_len=1, mean_seq_len=1.0, max_seq_len=1,
                             sources=("texts",), targets=("unused",), seed=seed)
    texts = generate_synthetic(config).domains[0].items["text"].tolist()
    assert len(set(texts)) == n_texts, "synthetic titles must be distinct"
    return texts


def encode_round(texts: list[str], model: str, args: argparse.Namespace) -> dict:
    """One cold and one cached ``encode_texts`` call in a fresh cache folder: seconds, and equal outputs."""
    with tempfile.TemporaryDirectory(prefix="bench-encode-") as folder:
        config = TextEncoderConfig(model=model, batch_size=args.batch_size, cache_dir=folder, device=args.device,
                                   show_progress=False)
        started = time.perf_counter()
        cold = encode_texts(texts, config)
        middle = time.perf_counter()
        cached = encode_texts(texts, config)
        ended = time.perf_counter()
    return {"cold": middle - started, "cached": ended - middle, "equal": bool(np.array_equal(cold, cached)),
            "dim": int(cold.shape[1])}


def main(args: argparse.Namespace) -> dict:
    device = bc.setup(args)
    texts = synthetic_texts(args.n_texts, args.seed)
    load_s = {}
    for model in args.models:
        started = time.perf_counter()
        load_encoder(model, args.device)  # cached per process: the rounds below measure encoding only
        load_s[model] = time.perf_counter() - started
    for _ in range(args.warmup):
        for model in args.models:
            encode_round(texts, model, args)
    rounds: dict[str, list[dict]] = {model: [] for model in args.models}
    for round_ in range(args.repeats):
        shift = round_ % len(args.models)
        for model in args.models[shift:] + args.models[:shift]:
            rounds[model].append(encode_round(texts, model, args))
    results = {}
    for model, measured in rounds.items():
        cold, cached = bc.median([m["cold"] for m in measured]), bc.median([m["cached"] for m in measured])
        results[model] = {"load_s": load_s[model], "dim": measured[0]["dim"], "cold_s": cold, "cached_s": cached,
                          "cold_texts_per_s": len(texts) / cold, "cached_texts_per_s": len(texts) / cached,
                          "cached_equals_cold": all(m["equal"] for m in measured),
                          "cold_s_per_round": [m["cold"] for m in measured],
                          "cached_s_per_round": [m["cached"] for m in measured]}
    payload = {"benchmark": "encode", "args": vars(args), "environment": bc.environment(device),
               "n_texts": len(texts), "mean_text_chars": float(np.mean([len(t) for t in texts])), "results": results}
    report(payload)
    if args.out:
        bc.write_json(args.out, payload)
    return payload


def report(payload: dict) -> None:
    rows = [{"encoder": model, "dim": r["dim"], "load s": r["load_s"], "cold texts/s": r["cold_texts_per_s"],
             "cached texts/s": r["cached_texts_per_s"], "cached = cold": r["cached_equals_cold"]}
            for model, r in payload["results"].items()]
    print(bc.format_table(rows, ["encoder", "dim", "load s", "cold texts/s", "cached texts/s", "cached = cold"]))
    print(f"{payload['n_texts']:,} distinct texts of {payload['mean_text_chars']:.0f} characters on average")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main(parse_args())
