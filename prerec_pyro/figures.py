"""Figures of the study, with matplotlib: incremental fine-tuning curves (Fig. 3) and popularity (Fig. 5).

Both write PNGs atomically (a temporary file beside the target, then a rename).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from prerec_pyro.io import atomic_write  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_incremental(curves: pd.DataFrame, path: Path, metric: str = "rndcg@k%") -> Path:
    """Fig. 3: x = target training interactions (log scale), y = ``metric``; solid = pre-trained, dashed = scratch.

    ``curves`` has columns domain, method, n_train, ``metric`` (zero-shot rows have n_train = 0, drawn at x = 1)."""
    domains = list(dict.fromkeys(curves["domain"]))
    n_cols = min(4, len(domains))
    n_rows = -(-len(domains) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.4 * n_rows), squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        if index >= len(domains):
            ax.set_visible(False)
            continue
        part = curves[curves["domain"] == domains[index]]
        for method, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("n_train")
            style = "--" if "scratch" in method else "-"
            ax.plot(np.maximum(rows["n_train"], 1), rows[metric], style, marker="o", label=method)
        ax.set_xscale("log")
        ax.set_title(domains[index])
        if index >= len(domains) - n_cols:  # the bottom plot of each column
            ax.set_xlabel("target training interactions (zero-shot at 1)")
        if index % n_cols == 0:
            ax.set_ylabel(metric.replace("rndcg", "r-NDCG").replace("k%", "K%"))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Incremental fine-tuning: pre-trained (solid) vs from scratch (dashed)")
    return save_figure(fig, path)


def plot_popularity(panels: list[dict], path: Path) -> Path:
    """Fig. 5: per domain, traffic per interval, the distributions of F_1 and F_2, and the learned popularity score.

    Each panel: {"domain", "traffic" [n_intervals], "f1" [n], "f2" [n], "score" [n]} (F and the score over the
    (interval, item) pairs with a non-zero count)."""
    fig, axes = plt.subplots(len(panels), 3, figsize=(12, 2.8 * len(panels)), squeeze=False)
    for row, panel in zip(axes, panels):
        row[0].bar(np.arange(len(panel["traffic"])), panel["traffic"], color="tab:gray")
        row[0].set_title(f"{panel['domain']}: interactions per interval")
        row[0].set_xlabel("interval")
        for index, key in ((1, "f1"), (1, "f2")):
            row[index].hist(np.log1p(panel[key]), bins=40, alpha=0.6, label=key.upper())
        row[1].set_title("popularity factors (non-zero counts)")
        row[1].set_xlabel("log(1 + F_w)")
        row[1].legend()
        row[2].scatter(np.log1p(panel["f1"]), panel["score"], s=4, alpha=0.4)
        row[2].set_title("learned popularity score")
        row[2].set_xlabel("log(1 + F_1)")
        row[2].set_ylabel("Z·(W_z + mean user state)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_posterior_study(similarity: pd.DataFrame, bins: pd.DataFrame, items: pd.DataFrame, path: Path) -> Path:
    """Three panels of ``scripts/posterior_study.py``: posterior distance between source domains (credible interval)
    against their item-popularity rank correlation; reliability of the top prediction, MAP and posterior predictive
    (quantile bins, log axes); the item offsets' posterior spread against their interaction counts."""
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13.5, 3.8), layout="constrained")
    error = [similarity["distance_mean"] - similarity["distance_low"],
             similarity["distance_high"] - similarity["distance_mean"]]
    left.errorbar(similarity["popularity_spearman"], similarity["distance_mean"], yerr=error, fmt="o", capsize=3)
    for _, row in similarity.iterrows():
        left.annotate(f"{row['domain']}–{row['other']}", (row["popularity_spearman"], row["distance_mean"]),
                      fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set(xlabel="item popularity Spearman (logs)", ylabel="posterior ||D_k - D_l||", title="domain similarity")
    for scorer, part in bins.groupby("scorer", sort=False):
        middle.plot(part["confidence"], part["accuracy"], marker="o", label=scorer)
    low = max(float(bins["confidence"].min()), 1e-6)
    middle.plot([low, 1], [low, 1], color="grey", linestyle=":", label="calibrated")
    middle.set(xscale="log", xlabel="confidence (top item)", ylabel="accuracy",
               title="reliability (sources' validation)")
    middle.set_yscale("symlog", linthresh=low)
    middle.legend(fontsize=8)
    if len(items):
        for end, part in items.groupby("end", sort=False):
            right.scatter(np.maximum(part["interactions"], 0.5), part["posterior_std"], label=end, s=14)
        right.set(xscale="log", xlabel="interactions (0 drawn at 0.5)", ylabel="posterior std of eps_v",
                  title="item offsets: widest and narrowest")
        right.legend(fontsize=8)
    else:
        right.set_axis_off()
        right.text(0.5, 0.5, "a point-estimate guide:\nno posterior spread", ha="center", va="center")
    return save_figure(fig, path)


def plot_zero_shot(table: pd.DataFrame, path: Path, metric: str = "rndcg@k%") -> Path:
    """Zero-shot ``metric`` per target (bars: methods, whiskers: 95% bootstrap intervals over users), one panel per
    history rule; ``table`` is ``results_table``'s ("all" samples are drawn, the mean over targets is left out)."""
    rows = table[(table["subset"] == "all") & (table["domain"] != "mean")]
    rules = list(dict.fromkeys(rows["history_items"])) if "history_items" in rows else ["keep"]
    targets, methods = list(dict.fromkeys(rows["domain"])), list(dict.fromkeys(rows["method"]))
    fig, axes = plt.subplots(1, len(rules), figsize=(1.2 + 1.1 * len(targets) * len(rules) + 2, 3.6), squeeze=False,
                             layout="constrained", sharey=True)
    width = 0.8 / len(methods)
    for ax, rule in zip(axes[0], rules):
        part = rows[rows["history_items"] == rule] if "history_items" in rows else rows
        for m, method in enumerate(methods):
            cells = part[part["method"] == method].set_index("domain").reindex(targets)
            values = cells[metric].to_numpy(dtype=float)
            errors = np.abs(np.stack([values - cells[f"{metric}_low"], cells[f"{metric}_high"] - values]))
            ax.bar(np.arange(len(targets)) + (m - (len(methods) - 1) / 2) * width, values, width, yerr=errors,
                   capsize=2, label=method)
        ax.set_xticks(np.arange(len(targets)), targets, rotation=30, ha="right")
        ax.set_title(f"history items: {rule}")
        ax.set_ylabel(metric)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_figure(fig, path)
