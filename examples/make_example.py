"""Write the small own-data example: four shops' items and interactions, and the benchmark file that names them.

    python examples/make_example.py            # rewrites examples/own_data/{items.csv,interactions.csv,benchmark.toml}

Three source shops and one new target shop sell household products. Half of the catalogue is sold everywhere (an
empty ``domain`` in items.csv), every source shop has a few items of its own and the target shop has more, which no
source ever sold. Each customer has a favourite category; the log is seeded, so the files are the same every time.
Then train and evaluate on it:

    python scripts/map_pretrain.py --benchmark examples/own_data/benchmark.toml --runs runs
    python scripts/intervene_eval.py --benchmark examples/own_data/benchmark.toml --target all --runs runs
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

SEED = 7
OUT = Path(__file__).resolve().parent / "own_data"
SOURCES = ("shop_berlin", "shop_paris", "shop_madrid")
TARGET = "shop_oslo"
N_SHARED, N_SOURCE_OWN, N_TARGET_OWN = 30, 6, 12
USERS_PER_SHOP, MIN_EVENTS, MAX_EVENTS = 20, 3, 8
START = dt.date(2023, 1, 2)

CATEGORIES = {
    "kitchen": ("mug", "teapot", "salad bowl", "chopping board", "frying pan", "tea towel", "water bottle"),
    "garden": ("plant pot", "watering can", "garden gloves", "bird feeder", "hose reel", "seed tray"),
    "stationery": ("notebook", "fountain pen", "desk organiser", "pencil case", "sketchbook", "wall calendar"),
    "toys": ("jigsaw puzzle", "wooden train", "plush bear", "building blocks", "kite", "card game"),
    "home": ("scented candle", "cushion cover", "photo frame", "table lamp", "wool throw", "wall clock"),
}
ADJECTIVES = ("small", "large", "classic", "vintage", "modern", "handmade", "eco", "travel")
COLOURS = ("red", "blue", "green", "white", "black", "yellow", "grey", "pink")

BENCHMARK_TOML = """\
# A benchmark on your own data: scripts take --benchmark examples/own_data/benchmark.toml
name = "own-shops"
description = "three shops' logs pre-train PreRec; a new shop with items of its own is the zero-shot target"
sources = ["shop_berlin", "shop_paris", "shop_madrid"]
targets = ["shop_oslo"]
k_percent = 5
interval_days = 15

[defaults]  # a tiny model: trains in seconds on a CPU
hidden_dim = 32
n_heads = 2
batch_size = 16
lr = 1e-3
max_epochs = 3
patience = 2

[data]  # generic-format tables (prerec_pyro/data/loaders/generic.py), paths relative to this file
items = "items.csv"
interactions = "interactions.csv"
"""


def make_items(rng: random.Random) -> list[dict]:
    """item_id, text, domain (empty: sold in every shop), category (for the log only)."""
    owners = ([""] * N_SHARED + [shop for shop in SOURCES for _ in range(N_SOURCE_OWN)] + [TARGET] * N_TARGET_OWN)
    items, seen = [], set()
    for n, owner in enumerate(owners, start=1):
        while True:
            category = rng.choice(sorted(CATEGORIES))
            text = f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(CATEGORIES[category])}, {rng.choice(COLOURS)}"
            if text not in seen:
                break
        seen.add(text)
        items.append({"item_id": f"p{n:03d}", "text": text, "domain": owner, "category": category})
    return items


def make_interactions(rng: random.Random, items: list[dict]) -> list[dict]:
    """user_id, item_id, timestamp (ISO date), domain: each user mostly buys from a favourite category."""
    rows = []
    for shop in SOURCES + (TARGET,):
        catalogue = [item for item in items if item["domain"] in ("", shop)]
        weights = {item["item_id"]: 1.0 / (1 + k % 10) for k, item in enumerate(catalogue)}  # some items sell more
        for u in range(1, USERS_PER_SHOP + 1):
            favourite = rng.choice(sorted(CATEGORIES))
            day = START + dt.timedelta(days=rng.randrange(120))
            for _ in range(rng.randint(MIN_EVENTS, MAX_EVENTS)):
                pool = [i for i in catalogue if i["category"] == favourite] if rng.random() < 0.7 else catalogue
                item = rng.choices(pool, weights=[weights[i["item_id"]] for i in pool])[0]
                rows.append({"user_id": f"{shop.removeprefix('shop_')}_{u:02d}", "item_id": item["item_id"],
                             "timestamp": day.isoformat(), "domain": shop})
                day += dt.timedelta(days=rng.randint(1, 12))
    return rows


def write_csv(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    rng = random.Random(SEED)
    items = make_items(rng)
    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(OUT / "items.csv", items, ("item_id", "text", "domain"))
    write_csv(OUT / "interactions.csv", make_interactions(rng, items), ("user_id", "item_id", "timestamp", "domain"))
    (OUT / "benchmark.toml").write_text(BENCHMARK_TOML)
    print(f"written: {OUT / 'items.csv'}, {OUT / 'interactions.csv'}, {OUT / 'benchmark.toml'}")


if __name__ == "__main__":
    main()
