"""The ablation tables (``scripts/ablations.py``): summaries of a long table of scored rows (one per method, seed,
target, subset and history rule), as ``ablations.csv``, ``ablations.md`` (means over targets, a table per history
rule, with each learned run's convergence record) and ``ablations_targets.md`` (per target, with 95% intervals).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from prerec_pyro.evaluate import HISTORY_RULES
from prerec_pyro.io import atomic_write, write_csv

SELECTION = "source_valid_intervened"  # the subset of the target-free selection criterion's rows
CONVERGENCE = "convergence"  # the subset of the rows that hold a run's convergence record
METRICS = ("rndcg@k%", "recall@k%")


def rule_rows(long: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The rows scored under history rule ``rule`` (rows written before the rules existed are "keep"), and the
    rule-free ones (the selection criterion)."""
    long = long[long["subset"] != CONVERGENCE]
    rules = long["history_items"] if "history_items" in long.columns else pd.Series("keep", index=long.index)
    rules = rules.where(rules.notna() | (long["subset"] == SELECTION), "keep")
    return long[(rules == rule) | rules.isna()]


def summary_table(long: pd.DataFrame, subset: str = "all", rule: str = "keep") -> pd.DataFrame:
    """Mean over targets per (method, seed), then mean and across-seed std per method (``subset`` samples, history
    rule ``rule``)."""
    long = rule_rows(long, rule)
    long = long.assign(**{m: long.get(m, float("nan")) for m in METRICS})  # a selection-only table has no recall
    rows = long[(long["subset"] == subset) & long["rndcg@k%"].notna()]
    per_seed = rows.groupby(["method", "seed"], sort=False)[list(METRICS)].mean().reset_index()
    grouped = per_seed.groupby("method", sort=False)[list(METRICS)]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std"))
    table = table.reindex(list(dict.fromkeys(long["method"])))  # methods with a selection score only, too
    table["n_seeds"] = long.groupby("method", sort=False)["seed"].nunique().where(lambda n: n > 0)
    selection = long[long["subset"] == SELECTION].groupby("method", sort=False)["rndcg@k%"]
    table["selection_mean"], table["selection_std"] = selection.mean(), selection.std(ddof=1).fillna(0.0)
    return table.reset_index()


def per_target_table(long: pd.DataFrame, metric: str = "rndcg@k%", rule: str = "keep") -> pd.DataFrame:
    """Per target and method ("all" samples, history rule ``rule``): the mean over seeds, the across-seed sd, and
    the 95% bootstrap interval over users averaged over seeds."""
    rows = rule_rows(long, rule)
    rows = rows[rows["subset"] == "all"]
    grouped = rows.groupby(["domain", "method"], sort=False)
    return pd.DataFrame({"mean": grouped[metric].mean(), "sd": grouped[metric].std(ddof=1).fillna(0.0),
                         "low": grouped[f"{metric}_low"].mean(), "high": grouped[f"{metric}_high"].mean()})


def per_target_markdown(long: pd.DataFrame, rule: str = "keep") -> str:
    table = per_target_table(long, rule=rule)
    methods = list(dict.fromkeys(table.index.get_level_values("method")))
    lines = ["| target | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for target in dict.fromkeys(table.index.get_level_values("domain")):
        cells = [_cell(table, target, method) for method in methods]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(table: pd.DataFrame, target: str, method: str) -> str:
    if (target, method) not in table.index:
        return "–"
    row = table.loc[(target, method)]
    return f"{row['mean']:.4f} ± {row['sd']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"


def markdown(table: pd.DataFrame, stopped: dict[str, str] | None = None) -> str:
    """One row per method: the means ± sd over seeds, the seeds, the target-free selection score, and why each
    seed's training stopped (``stopped``: by variant, ``convergence_cells``)."""
    stopped = stopped or {}
    lines = ["| method | r-NDCG@K% (mean ± sd over seeds) | Recall@K% | seeds | sources' validation, Eq. 8 | "
             "training stopped (per seed) |", "|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        cells = [f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" for m in METRICS]
        selection = "–" if pd.isna(row["selection_mean"]) else \
            f"{row['selection_mean']:.4f} ± {row['selection_std']:.4f}"
        stop = stopped.get(re.sub(r"/\S+", "", str(row["method"])), "–")  # variant/scoring (label) -> variant (label)
        lines.append(f"| {row['method']} | {' | '.join(cells)} | {row['n_seeds']} | {selection} | {stop} |")
    return "\n".join(lines) + "\n"


def write_summaries(long: pd.DataFrame, out: Path, benchmark: str) -> None:
    """``ablations.csv`` / ``ablations.md`` (means over targets, a table per history rule, with each learned method's
    convergence record) and ``ablations_targets.md`` (per target: mean ± sd over seeds [95% bootstrap interval over
    users, averaged over seeds])."""
    rules = [rule for rule in HISTORY_RULES if not rule_rows(long, rule).query("subset == 'all'").empty] or ["keep"]
    stopped = convergence_cells(long)
    tables = {rule: summary_table(long, rule=rule) for rule in rules}
    n_targets = long.loc[long["subset"] == "all", "domain"].nunique()
    write_csv(out / "ablations.csv", pd.concat([t.assign(history_items=r) for r, t in tables.items()]))
    text = "".join(f"{benchmark}: zero-shot, mean over {n_targets} targets, history items: {rule}\n\n"
                   + markdown(table, stopped) + "\n" for rule, table in tables.items())
    if (long["subset"] == "all").any():
        targets = "".join(f"history items: {rule}\n\n" + per_target_markdown(long, rule) + "\n" for rule in rules)
        atomic_write(out / "ablations_targets.md", lambda f: f.write(targets.encode()))
    new_items = long[(long["subset"] == "new_items") & long.get("rndcg@k%", pd.Series(dtype=float)).notna()]
    if len(new_items) and (new_items["n_samples"] > 0).any():  # the cold-item protocol's subset
        counts = new_items.groupby("domain")["n_samples"].max()
        text += (f"\n{benchmark}: zero-shot on the samples whose item no source lists (new_items: "
                 f"{int(counts.sum())} samples in {int((counts > 0).sum())} target(s)), mean over those targets, "
                 f"history items: {rules[0]}\n\n" + markdown(summary_table(long, "new_items", rules[0]), stopped))
    atomic_write(out / "ablations.md", lambda f: f.write(text.encode()))
    print(text)


def convergence_cells(long: pd.DataFrame) -> dict[str, str]:
    """Per variant: "<stopped_by> after <epochs_run>" for each seed, in seed order."""
    rows = long[long["subset"] == CONVERGENCE].sort_values("seed") if "stopped_by" in long.columns else long.iloc[:0]
    return {variant: ", ".join(f"{r.stopped_by} after {int(r.epochs_run)}" for r in group.itertuples())
            for variant, group in rows.groupby("method", sort=False)}
