"""The fair-protocol results report (docs/RESULTS.md): for each benchmark and history rule, whether PreRec is the best
zero-shot method, by what ratio to the best other one, with the spread over training seeds.

Input: the long tables that ``scripts/ablations.py`` writes (one row per method, seed, target, subset and history
rule). PreRec is the default configuration with its default zero-shot scoring, Eq. 8 with the sequence model weighed
by each user's history (``PRERECS``: a table made before that scoring existed is judged on Eq. 8, and says so);
every other method of the table (Random, POP, SBERT, SBERT+POP, PreRec_n, ZESRec, UniSRec) is a contender, and the
run's other scorings are not. A method's score is its mean r-NDCG@K% over the
targets (unweighted) for each seed, then the mean and standard deviation over seeds; a training-free method has one
"seed". A gap counts as a win or a loss only outside ``SPREAD`` times the pooled across-seed standard deviation.
"""

from __future__ import annotations

import math
import re

import pandas as pd

# the default's rows: the fair group's default scoring, then Eq. 8 where a table has no other, then older tables
PRERECS = ("prerec_default/history", "prerec_default/eq8", "prerec_repeat/eq8")
LIKELIHOOD_SUFFIX = "_likelihood"  # the history-weighed scoring with the probabilities as evidence (the earlier one)
METRIC = "rndcg@k%"
SPREAD = 2.0  # a gap within SPREAD x sqrt(sd_a^2 + sd_b^2) is a tie


def method_scores(long: pd.DataFrame, rule: str, targets: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per method: mean and sd over seeds of the mean r-NDCG@K% over ``targets`` (default: all), "all" samples
    under history rule ``rule``; and the number of seeds. Index: method."""
    rules = long["history_items"].fillna("keep") if "history_items" in long.columns else "keep"
    rows = long[(long["subset"] == "all") & (rules == rule) & long[METRIC].notna()]
    if targets is not None:
        rows = rows[rows["domain"].isin(targets)]
    per_seed = rows.groupby(["method", "seed"], sort=False)[METRIC].mean().reset_index()
    grouped = per_seed.groupby("method", sort=False)[METRIC]
    return pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1).fillna(0.0), "seeds": grouped.size()})


def verdict(scores: pd.DataFrame) -> dict | None:
    """PreRec against the best other method of ``scores`` (``method_scores``): the ratio of means, both spreads,
    and "best", "tied" or "not best" (with one training seed of PreRec, only ahead or behind); None without a
    PreRec row or without another method (other scorings of PreRec's own run, ``prerec_default/history``, are not
    other methods)."""
    prerec = next((name for name in PRERECS if name in scores.index), None)
    if prerec is None:
        return None
    run = prerec.split("/")[0]  # the same run's other scorings are PreRec too, not other methods
    others = scores[~scores.index.str.startswith(f"{run}/")]
    if others.empty:
        return None
    best = others["mean"].idxmax()
    ours, theirs = scores.loc[prerec], others.loc[best]
    gap, spread = ours["mean"] - theirs["mean"], SPREAD * math.hypot(ours["sd"], theirs["sd"])
    outcome = "best" if gap > spread else ("not best" if gap < -spread else "tied (inside the seed spread)")
    if ours["seeds"] < 2:  # no spread to judge a gap by: a learned method needs two seeds for a verdict
        outcome = ("ahead" if gap > 0 else "behind") + " on one seed (no spread yet: no verdict)"
    return {"prerec": ours["mean"], "prerec_sd": ours["sd"], "prerec_row": prerec, "best_other": best,
            "other": theirs["mean"],
            "other_sd": theirs["sd"], "ratio": ours["mean"] / theirs["mean"] if theirs["mean"] else math.inf,
            "outcome": outcome, "seeds": int(ours["seeds"])}


def summary_rows(long: pd.DataFrame, benchmark: str, groups: dict[str, tuple[str, ...]] | None = None,
                 rules: tuple[str, ...] = ("keep", "exclude"), missing: tuple[str, ...] = ()) -> list[dict]:
    """One verdict row per history rule (and per target group, e.g. the platform halves of mixed-sources);
    ``missing``: methods of the protocol the table lacks, named in every verdict (it is against the others only)."""
    rows = []
    parts = {"all targets": None, **(groups or {})} if groups and len(groups) > 1 else {"all targets": None}
    methods = set(long["method"])  # a table whose history rows predate the ranks as evidence has no likelihood rows
    likelihood = PRERECS[0] in methods and f"{PRERECS[0]}{LIKELIHOOD_SUFFIX}" not in methods
    for part, targets in parts.items():
        for rule in rules:
            found = verdict(method_scores(long, rule, targets))
            if found:
                found["outcome"] += f" (not run: {', '.join(missing)})" if missing else ""
                found["likelihood_evidence"] = likelihood and found["prerec_row"] == PRERECS[0]
                rows.append({"benchmark": benchmark, "targets": part, "history_items": rule, **found})
    return rows


def summary_markdown(rows: list[dict]) -> str:
    """The verdict rows as a markdown table."""
    lines = ["| benchmark | targets | history items | PreRec (mean ± sd) | best other method | its score | ratio | "
             "PreRec is | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        scoring = "" if r.get("prerec_row", PRERECS[0]) == PRERECS[0] else " (Eq. 8)"
        scoring += " (likelihood evidence)" if r.get("likelihood_evidence") else ""
        lines.append(f"| {r['benchmark']} | {r['targets']} | {r['history_items']} | {r['prerec']:.4f} ± "
                     f"{r['prerec_sd']:.4f}{scoring} | {r['best_other']} | {r['other']:.4f} ± {r['other_sd']:.4f} | "
                     f"{r['ratio']:.2f}x | {r['outcome']} | {r['seeds']} |")
    return "\n".join(lines) + "\n"


CARRIED = ("Carried over as written from the previous docs/RESULTS.md: these tables were made by the command below "
           "before the suite kept its outputs under docs/results/, so they cannot be rebuilt without training again.")


def eq8_labelled(row: str) -> str:
    """A carried verdict row (made before the default scoring existed: judged on Eq. 8) with its PreRec cell saying
    so, once."""
    cells = row.split(" | ")
    if len(cells) > 3 and "(Eq. 8)" not in cells[3]:
        cells[3] += " (Eq. 8)"
    return " | ".join(cells)


def carried_sections(previous: str, benchmarks: list[str]) -> dict[str, dict]:
    """The parts of an earlier docs/RESULTS.md (``previous``) for ``benchmarks`` that it holds: per benchmark its
    verdict rows (markdown lines of the summary table) and its section's text, marked as carried (once)."""
    carried = {}
    for benchmark in benchmarks:
        found = re.search(rf"^## {re.escape(benchmark)}\n(.*?)(?=^## |\Z)", previous, flags=re.S | re.M)
        if not found:
            continue
        rows = [eq8_labelled(line) for line in previous.splitlines() if line.startswith(f"| {benchmark} |")]
        tables = found.group(1).strip("\n") + "\n"
        carried[benchmark] = {"rows": rows, "tables": tables if tables.startswith(CARRIED) else
                              f"{CARRIED}\n\n{tables}"}
    return carried


def results_markdown(sections: list[dict], command: str, absent: list[str] = (),
                     carried: dict[str, dict] | None = None) -> str:
    """docs/RESULTS.md: the verdicts of every benchmark, then each benchmark's tables. ``sections``: one dict per
    benchmark with ``benchmark``, ``long`` (its long table), ``groups`` (target groups) and ``tables`` (markdown
    of its summary and per-target tables); ``absent``: benchmarks of the protocol with no tables yet; ``carried``:
    earlier benchmarks' rows and tables as ``carried_sections`` gives them."""
    carried = carried or {}
    verdicts = [row for s in sections
                for row in summary_rows(s["long"], s["benchmark"], s["groups"], missing=s.get("missing", ()))]
    parts = ["# Results under one protocol\n",
             "Generated by `" + command + "`; do not edit by hand. Every method is scored by the same harness on the "
             "same test users, under both history rules (`keep`: scores as the method gives them; `exclude`: every "
             "item the user had before the target ranked last, for every method), and every learned method is trained "
             "until its own sources' validation score has not improved for the patience (the last column of each "
             "table says why each seed stopped: `patience`, or `cap` where a run reached the step cap). r-NDCG@K% is "
             "the mean over targets; ± is the standard deviation over training seeds; a gap inside "
             f"{SPREAD:g} pooled standard deviations is a tie. PreRec is the default configuration scored by the "
             "library's default zero-shot scoring (`prerec_default/history`: Eq. 8 with the sequence model weighed by "
             "each user's history, its evidence the ranks of the user's earlier items); a verdict marked (Eq. 8) "
             "comes from a table made before that scoring existed, one marked (likelihood evidence) from a table "
             "whose weighing read the probabilities of the earlier items instead (`/history_likelihood` where both "
             "were scored). "
             "Each PreRec-family run is scored by Eq. 8 and by the default (`/eq8`, `/history`; the rescored tables "
             "also by `/history_likelihood`), and each scoring of PreRec_n is a contender.\n",
             "## PreRec against the best other method\n",
             summary_markdown(verdicts) + "".join(row + "\n" for part in carried.values() for row in part["rows"])]
    if carried:
        parts.append(f"Carried over from the previous generation (no record kept): {', '.join(carried)}.\n")
    if absent:
        parts.append(f"Not measured under this protocol yet: {', '.join(absent)}.\n")
    for section in sections:
        parts += [f"## {section['benchmark']}\n", section["tables"]]
    for benchmark, part in carried.items():
        parts += [f"## {benchmark}\n", part["tables"]]
    return "\n".join(parts)


README_BEGIN = "<!-- verdicts: made from docs/RESULTS.md by scripts/ablation_suite.py -->"
README_END = "<!-- /verdicts -->"


def verdict_table(results: str) -> str:
    """The verdict table of a docs/RESULTS.md text (its "PreRec against the best other method" table)."""
    found = re.search(r"^## PreRec against the best other method\n\n((?:\|.*\n)+)", results, flags=re.M)
    if not found:
        raise ValueError("this docs/RESULTS.md has no table under '## PreRec against the best other method'")
    return found.group(1)


def with_verdicts(readme: str, results: str) -> str:
    """``readme`` with the text between its verdict markers replaced by the verdict table of ``results``."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {README_BEGIN} ... {README_END} block for the verdict table")
    return readme[:start + len(README_BEGIN)] + "\n" + verdict_table(results) + readme[end:]
