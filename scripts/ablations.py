"""Zero-shot ablations over training seeds: each model variant pre-trained once per seed, scored on every target.

    python scripts/ablations.py --benchmark retail-countries --data-dir ../shared/data --seeds 0 1 2
    python scripts/ablations.py --variants prerec_n prerec_literal --seeds 0       # a subset, one seed
    python scripts/ablations.py --benchmark retail-to-movielens --pretrained-on retail-countries ...  # cross-platform

A variant is data (``VARIANTS``: a method and its configuration changes) and a scoring rule (Eq. 8's plain
intervention, the back-door average over draws of D, or shared item offsets). Runs are kept under
``--runs/<variant>/seed<s>/`` and reused when finished, so an interrupted study resumes. Writes, under ``--out``:
``ablations_long.csv`` (every variant, seed, target, subset and history rule with 95% bootstrap intervals over users)
and ``ablations.csv`` / ``ablations.md`` (mean r-NDCG@K% and Recall@K% over targets per seed, then the mean and the
across-seed standard deviation, one table per history rule of ``--history-items``; each learned method's
convergence record: why each seed's training stopped, at which epoch). Training-free baselines (Random, POP, SBERT,
SBERT+POP) appear once, with no seed spread.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import torch

from prerec_pyro import cli
from prerec_pyro.ablation_tables import CONVERGENCE, SELECTION, write_summaries
from prerec_pyro.baseline_runs import BASELINE_KINDS, pretrained_baseline
from prerec_pyro.baselines.train import BaselineScorer
from prerec_pyro.data.benchmarks import BENCHMARK_HELP, get_benchmark
from prerec_pyro.evaluate import HISTORY_RULES, EvalConfig
from prerec_pyro.inference.pretrained import PretrainedRun
from prerec_pyro.inference.pretraining import pretrain, resume_pretraining
from prerec_pyro.inference.runs import METHODS, RunConfig, common_cold_protocol, find_latest_run, load_run_config
from prerec_pyro.inference.selection import SELECTION_DIR
from prerec_pyro.inference.zero_shot import intervened_source_score, rule_scorers, sbert_pop_alpha, score_target
from prerec_pyro.io import atomic_write, write_csv
from prerec_pyro.pipeline import prepare_benchmark
from prerec_pyro.progress import progress_bar
from prerec_pyro.run_flags import parse_run_args, run_config_from_args
from prerec_pyro.text import centering_label

logger = logging.getLogger("ablations")

class Variant(NamedTuple):
    """A model variant as data: the method, its ``PreRecConfig`` changes and its popularity mode (None: the
    library's default configuration, ``run_config``), and the selection criterion."""

    method: str
    model: dict | None = None
    popularity_mode: str | None = None
    select_by: str | None = None  # None: the invocation's (--pretrain-args --select-by ...)


def eq6(popularity_mode: str = "interval", select_by: str = "in_domain", method: str = "prerec",
        **changes) -> Variant:
    """A variant that spells out every model choice (the paper's Eq. 6 unless changed), so it stays what it is
    whatever the library's defaults become."""
    model = {"prior_units": "total", "shared_item_offsets": False, "last_item_skip": False, "text_channel": "off",
             "repeat_term": False, **changes}
    return Variant(method, model, popularity_mode, select_by)


PER_OBS = "per_observation"
SKIP_TEXT_REPEAT = {"last_item_skip": True, "text_channel": "last", "repeat_term": True}
VARIANTS = {
    "prerec_n": eq6(method="prerec_n"),
    "prerec_literal": eq6(),
    "prerec_per_obs": eq6(prior_units=PER_OBS),
    "prerec_shared": eq6(prior_units=PER_OBS, shared_item_offsets=True),
    "prerec_per_obs_intervened": eq6(prior_units=PER_OBS, select_by="intervened"),
    "prerec_per_obs_sliding": eq6("sliding", prior_units=PER_OBS),
    "prerec_n_sliding_skip": eq6("sliding", method="prerec_n", last_item_skip=True),
    "prerec_combined": eq6("sliding", prior_units=PER_OBS, shared_item_offsets=True, last_item_skip=True),
    "prerec_n_text": eq6("sliding", method="prerec_n", last_item_skip=True, text_channel="last"),
    "prerec_text": eq6("sliding", prior_units=PER_OBS, shared_item_offsets=True, last_item_skip=True,
                       text_channel="last"),
    "prerec_n_repeat": eq6("sliding", method="prerec_n", **SKIP_TEXT_REPEAT),
    "prerec_repeat": eq6("sliding", prior_units=PER_OBS, shared_item_offsets=True, **SKIP_TEXT_REPEAT),
    "prerec_repeat_free_d": eq6("sliding", prior_units="offsets_per_observation", shared_item_offsets=True,
                                **SKIP_TEXT_REPEAT),
    "zesrec": Variant("zesrec"),  # the pre-trained baselines: PreRec's sizes and budget (--pretrain-args)
    "unisrec": Variant("unisrec"),
    "prerec_default": Variant("prerec"),  # the library's default configuration, whatever it is
    "prerec_n_default": Variant("prerec_n"),
}
# plain do(D=0, eps=0); back-door over D ~ p(D); shared item offsets; Eq. 8 averaged with its f_seq = 0 version, each
# weighed by the user's own history (inference/evidence.py; history_likelihood: its evidence the probabilities)
SCORINGS = ("eq8", "backdoor", "shared", "history", "history_likelihood")
SELECTION_USERS = 200  # the target-free criterion's users per source


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--benchmark", default="synthetic", help=BENCHMARK_HELP)
    p.add_argument("--data-dir", default=None, help="data root (default: $PREREC_DATA_DIR); unused by synthetic")
    p.add_argument("--pretrained-on", default=None,
                   help="use (or train) the runs of this benchmark (a name or a .toml file), whose sources must equal "
                        "--benchmark's (e.g. retail-countries for retail-to-movielens)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="model variants")
    p.add_argument("--scorings", nargs="+", default=["eq8"], choices=SCORINGS,
                   help="zero-shot scorings of the PreRec-family runs, each where it applies: eq8, history (f_seq "
                        "weighed by the user's history, its evidence the ranks of the user's earlier items; not for a "
                        "run scored by f_seq alone), history_likelihood (the same, its evidence their probabilities), "
                        "shared and backdoor "
                        "(runs with offsets; PreRec_n gets Eq. 8 instead)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--backdoor-samples", type=int, default=16, help="draws of D for the back-door scoring")
    p.add_argument("--runs", default="runs_ablations", help="root of the variants' run directories")
    p.add_argument("--out", default=None, help="output directory (default: <runs>/<benchmark>)")
    p.add_argument("--pretrain-args", nargs=argparse.REMAINDER, default=[],
                   help="extra flags for scripts/map_pretrain.py, for every variant (put last)")
    p.add_argument("--max-users", type=int, default=None,
                   help="evaluate a fixed seeded subset of at most this many test users per target (default: all)")
    p.add_argument("--skip-targets", action="store_true",
                   help="only the target-free selection score (Eq. 8 on the sources' validation users)")
    p.add_argument("--from-long", nargs="+", default=None,
                   help="only summarise existing ablations_long.csv files (several invocations' rows, merged) "
                        "into --out; nothing is trained or scored. Where two files hold the same method, seed, "
                        "target and rule, the earlier file's row is kept: list a rescoring before the record it "
                        "replaces (a record made before the ranks' weighing holds its likelihood rows as /history)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--history-items", nargs="+", default=list(HISTORY_RULES), choices=HISTORY_RULES,
                   help="history rules, each a table: keep (scores as given) or exclude (every item the user had "
                        "before the target ranked last, for every method)")
    p.add_argument("--device", type=cli.device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    args = p.parse_args(argv)
    args.command = cli.command_line(__file__, argv)
    for flag in ("benchmark", "pretrained_on"):
        if getattr(args, flag):
            try:
                get_benchmark(getattr(args, flag))
            except ValueError as error:
                p.error(f"--{flag.replace('_', '-')}: {error}")
    if args.pretrained_on and get_benchmark(args.pretrained_on).sources != get_benchmark(args.benchmark).sources:
        p.error(f"--pretrained-on {args.pretrained_on}: its sources {get_benchmark(args.pretrained_on).sources} "
                f"differ from {args.benchmark}'s {get_benchmark(args.benchmark).sources}")
    if args.backdoor_samples < 1 or args.n_boot < 1:
        p.error(f"--backdoor-samples and --n-boot must be >= 1, got {args.backdoor_samples}, {args.n_boot}")
    return args


def variant_config(variant: str, base: RunConfig) -> RunConfig:
    """``base`` (the invocation's sizes and budget) as ``variant``: its method, model changes, popularity mode and
    selection."""
    spec = VARIANTS[variant]
    assert spec.method in METHODS, f"{variant} is a baseline, not a PreRec run"
    model = replace(base.model, **(spec.model or {}))
    popularity = replace(base.popularity, mode=spec.popularity_mode or base.popularity.mode)
    select_by = spec.select_by or base.select_by
    return replace(base, method=spec.method, model=model.ablation() if spec.method == "prerec_n" else model,
                   popularity=popularity, select_by=select_by,
                   held_out=base.held_out if select_by == "held_out" else ())


def base_config(args: argparse.Namespace, seed: int = 0) -> RunConfig:
    """The run configuration of this invocation (``--pretrain-args`` read by the pre-training flags: sizes,
    optimiser, budget, text model) before a variant's changes; the baselines copy its sizes and budget."""
    flags = ["--benchmark", args.pretrained_on or args.benchmark, "--seed", str(seed), "--device", args.device]
    flags += ["--data-dir", args.data_dir] if args.data_dir else []
    return run_config_from_args(parse_run_args(flags + list(args.pretrain_args)))


def ensure_run(args: argparse.Namespace, variant: str, seed: int) -> Path:
    """The finished run of ``variant`` and ``seed``, pre-training it if there is none: an interrupted run of the same
    configuration is resumed from its last checkpoint (a converged run is most of an hour on a CPU), any other is
    started afresh."""
    root, benchmark = Path(args.runs) / variant / f"seed{seed}", args.pretrained_on or args.benchmark
    run, config = find_latest_run(root, benchmark, VARIANTS[variant].method), base_config(args, seed)
    if run is None:
        wanted = variant_config(variant, config)
        unfinished = find_latest_run(root, benchmark, wanted.method, state="interrupted")
        if unfinished is not None and resumable_as(unfinished, wanted):
            logger.info("resuming the interrupted run %s (the same configuration)", unfinished)
            return resume_pretraining(unfinished)
        return pretrain(wanted, root)
    found = load_run_config(run).text_centering
    if found != config.text_centering:
        raise ValueError(f"{run} was trained on text centring {found!r}, not {config.text_centering!r}: use another "
                         "--runs folder for runs on other text vectors")
    return run


def resumable_as(run: Path, wanted: RunConfig) -> bool:
    """Whether the interrupted ``run`` kept a checkpoint (not killed in its first epoch; a held-out selection's in
    its stage or its refit) and has ``wanted``'s configuration (the creation time aside, and a refit's length, which
    its stage chose)."""
    found = load_run_config(run)
    if wanted.select_by == "held_out":
        found = replace(found, train=replace(found.train, max_epochs=wanted.train.max_epochs))
    kept = (run / "last.pt").exists() or (run / SELECTION_DIR / "last.pt").exists()
    return kept and replace(found, created="") == replace(wanted, created="")


def reference_config(args: argparse.Namespace) -> RunConfig:
    """The configuration the pre-trained baselines copy (sizes, optimiser, budget): PreRec_n's of this
    invocation."""
    return variant_config("prerec_n_default", base_config(args))


def ensure_baseline(args: argparse.Namespace, prepared, reference: RunConfig, variant: str, seed: int):
    """The pre-trained baseline of ``variant`` and ``seed`` (trained on ``prepared``'s sources with ``reference``'s
    sizes and budget if missing)."""
    kind = VARIANTS[variant].method
    folder = Path(args.runs) / variant / f"seed{seed}" / get_benchmark(args.pretrained_on or args.benchmark).folder
    return pretrained_baseline(kind, prepared, reference, seed, folder, args.device)


def run_scorers(args: argparse.Namespace, prepared, target: str, variant: str, run: PretrainedRun) -> list:
    """The zero-shot scorers of one run (loaded once) on ``target``, named ``<variant>/<scoring>``: each scoring that
    applies to the run (the offsets' scorings to a run with offsets, the history-weighed one to a run whose scores
    are not f_seq's alone, ``PretrainedRun.weighs``; Eq. 8 to every run, and alone when nothing else applies)."""
    applies = {"eq8": True, "history": run.weighs(), "history_likelihood": run.weighs()}
    scorings = [s for s in args.scorings if applies.get(s, run.config.model.use_offsets)] or ["eq8"]
    scorers = []
    for scoring in scorings:
        samples = args.backdoor_samples if scoring == "backdoor" else 0
        offsets = "shared" if scoring == "shared" else "zero"
        evidence = "likelihood" if scoring == "history_likelihood" else "ranks"
        scorer = run.target_scorer(prepared, target, samples, offsets, weigh_sequence=scoring.startswith("history"),
                                   sequence_evidence=evidence)
        scorer.name = f"{variant}/{scoring}"
        scorers.append(scorer)
    return scorers


def main(args: argparse.Namespace) -> Path:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out = Path(args.out) if args.out else Path(args.runs) / get_benchmark(args.benchmark).folder
    if args.from_long:
        return merge_longs(args, out)
    jobs = [(variant, seed) for seed in args.seeds for variant in args.variants]  # a seed at a time
    runs = {job: ensure_run(args, *job) for job in progress_bar(jobs, desc="pre-training")
            if VARIANTS[job[0]].method not in BASELINE_KINDS}
    config = load_run_config(next(iter(runs.values()))) if runs else reference_config(args)
    check_same_data(runs)
    cold_items, cold_seed = common_cold_protocol({f"{v}/seed{s}": run for (v, s), run in runs.items()})
    if cold_items and args.pretrained_on:
        raise ValueError("--pretrained-on with cold-item runs: the removed ids are drawn from the benchmark being "
                         "built, which would not be the sources those runs saw")
    prepared = prepare_benchmark(args.benchmark, args.data_dir or config.data_dir, config.sequences,
                                 config.popularity, config.text_encoder(),
                                 cold_items=cold_items, cold_seed=cold_seed)
    baseline_jobs = [job for job in jobs if VARIANTS[job[0]].method in BASELINE_KINDS]
    reference = reference_config(args) if baseline_jobs else None  # parsed once: every baseline copies it
    baselines = {job: ensure_baseline(args, prepared, reference, *job) for job in baseline_jobs}
    loaded = {job: PretrainedRun.load(run, args.device) for job, run in runs.items()}  # once, handed on
    rows = [] if args.skip_targets else target_rows(args, prepared, loaded, baselines)
    rows += selection_rows(args, prepared, loaded)
    if not rows:  # --skip-targets with baselines only: trained, nothing to score
        logger.info("nothing scored (--skip-targets and no PreRec variant); the baselines are trained")
        return out
    long = text_labelled(pd.DataFrame(rows + convergence_rows(args, runs, baselines)), config)
    write_csv(out / "ablations_long.csv", long)
    atomic_write(out / "command.txt", lambda f: f.write((args.command + "\n").encode()))  # what made these tables
    write_summaries(long, out, args.benchmark)
    return out


TEXT_FREE = ("Random", "POP")


def merge_longs(args: argparse.Namespace, out: Path) -> Path:
    """``--from-long``: the rows of several invocations' ``ablations_long.csv`` (the first of duplicates kept)
    written to ``out`` as one long table with its summaries, and ``command.txt`` listing each input's commands, then
    this one."""
    missing = [path for path in args.from_long if not Path(path).is_file()]
    if missing:
        raise ValueError(f"--from-long: {missing[0]} does not exist (an ablations_long.csv written by this script)")
    long = pd.concat([pd.read_csv(path) for path in args.from_long], ignore_index=True)
    keys = ["method", "domain", "subset", "seed"] + (["history_items"] if "history_items" in long.columns else [])
    long = long.drop_duplicates(subset=keys, keep="first")
    write_csv(out / "ablations_long.csv", long)
    made_by = [Path(path).with_name("command.txt") for path in args.from_long]
    lines = dict.fromkeys([*(line for path in made_by if path.exists() for line in path.read_text().splitlines()
                             if line), args.command])  # in order, once each (a re-merge into the same folder too)
    atomic_write(out / "command.txt", lambda f: f.write("\n".join([*lines, ""]).encode()))
    write_summaries(long, out, args.benchmark)
    return out


def text_labelled(long: pd.DataFrame, config: RunConfig) -> pd.DataFrame:
    """Rows made on centred text vectors name it in their method (every method that reads text), so that tables
    merged with --from-long keep them apart from rows made on the plain vectors."""
    label = long["method"] + centering_label(config.text_centering)
    return long.assign(method=long["method"].where(long["method"].isin(TEXT_FREE), label))


def check_same_data(runs: dict) -> None:
    """The runs of one invocation share one prepared benchmark: their sequences, popularity factors and text model
    must agree (a run scored with another run's popularity factors would be silently wrong)."""
    seen = {}
    for (variant, seed), run in runs.items():
        config = load_run_config(run)
        key = (config.sequences, config.popularity, (config.text_model, config.text_centering))
        seen.setdefault(key, []).append(f"{variant}/seed{seed}")
    if len(seen) > 1:
        groups = "; ".join(f"{', '.join(names)}: {key[1]}, text {key[2]!r}" for key, names in seen.items())
        raise ValueError(f"these runs were trained on differently prepared data and cannot be scored together: "
                         f"{groups}; run them in separate invocations and merge with --from-long")


def target_rows(args: argparse.Namespace, prepared, runs: dict, baselines: dict) -> list[dict]:
    """Every target scored by POP, SBERT, each run's zero-shot scorers and each pre-trained baseline (Random
    first)."""
    eval_config = EvalConfig(k_percent=prepared.benchmark.k_percent, n_boot=args.n_boot, device=args.device,
                             max_users=args.max_users, history_items=tuple(args.history_items))
    rows, alpha = [], sbert_pop_alpha(prepared, eval_config)
    for target in progress_bar(prepared.benchmark.targets, desc="targets"):
        text = prepared.item_text(prepared.target(target)).to(args.device)
        for row in score_target(prepared, target, rule_scorers(prepared, target, alpha, args.device), eval_config):
            rows.append({**row, "seed": -1})
        for (variant, seed), run in runs.items():
            scorers = run_scorers(args, prepared, target, variant, run)
            rows += [{**row, "seed": seed} for row in score_target(prepared, target, scorers, eval_config,
                                                                   with_random=False)]
        for (variant, seed), model in baselines.items():
            model.set_item_text(text)
            rows += [{**row, "seed": seed} for row in score_target(prepared, target, [BaselineScorer(model, variant)],
                                                                   eval_config, with_random=False)]
    return rows


def selection_rows(args: argparse.Namespace, prepared, runs: dict) -> list[dict]:
    """Each run's Eq. 8 score on the sources' validation users (no target data): the selection criterion."""
    config = EvalConfig(k_percent=prepared.benchmark.k_percent, split="valid", n_boot=1, device=args.device,
                        max_users=SELECTION_USERS)
    return [{"method": f"{variant}/eq8", "domain": "sources", "subset": SELECTION, "seed": seed,
             "rndcg@k%": intervened_source_score(run, prepared, config)}
            for (variant, seed), run in progress_bar(runs.items(), desc="source validation")]


def convergence_rows(args: argparse.Namespace, runs: dict, baselines: dict) -> list[dict]:
    """Each learned run's convergence record (why it stopped, after how many epochs): rows of subset
    ``CONVERGENCE`` named by variant; runs written before the record existed have none."""
    rows = []
    for (variant, seed), run in runs.items():
        record = json.loads((run / "metrics.json").read_text()).get("convergence")
        rows += [{"method": variant, "domain": "sources", "subset": CONVERGENCE, "seed": seed, **record}] if record \
            else []
    for variant, seed in baselines:
        folder = Path(args.runs) / variant / f"seed{seed}" / get_benchmark(args.pretrained_on or args.benchmark).folder
        record = json.loads((folder / "history.json").read_text()).get("convergence")
        rows += [{"method": variant, "domain": "sources", "subset": CONVERGENCE, "seed": seed, **record}] if record \
            else []
    return rows


if __name__ == "__main__":
    cli.run(main, parse_args, __file__)
