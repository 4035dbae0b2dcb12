"""Pre-training runs on disk: their configuration, model and guide, and finding the latest run of a benchmark.

A run directory ``<out>/<benchmark folder>/<method>-<guide>-seed<seed>-<time>/`` (the folder is the benchmark's
name, or for a TOML benchmark its readable name and a hash of its path) holds ``config.json`` (a ``RunConfig``),
the checkpoints of ``inference.map`` and ``metrics.json``. ``load_run`` rebuilds the model and guide for the run's
own source data and loads ``best.pt``; ``load_nets`` restores only the networks (what zero-shot needs).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pyro
import torch

from prerec_pyro.data.benchmarks import get_benchmark
from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.models.prerec import PreRecConfig, PreRecModel
from prerec_pyro.pipeline import PreparedBenchmark, prepare_benchmark
from prerec_pyro.popularity import PopularityConfig
from prerec_pyro.text import TEXT_CENTERINGS, TextEncoderConfig

from .checkpoint import load_checkpoint, load_json, save_json
from .guides import make_guide
from .map import TrainConfig

METHODS = ("prerec", "prerec_n")
METHOD_LABELS = {"prerec": "PreRec", "prerec_n": "PreRec_n"}
SELECTIONS = ("in_domain", "intervened", "held_out")


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a pre-training run."""

    benchmark: str
    method: str
    guide: str
    model: PreRecConfig
    train: TrainConfig
    sequences: SequenceConfig
    popularity: PopularityConfig
    text_model: str
    data_dir: str | None = None
    text_centering: str = "none"  # TextEncoderConfig.centering of every catalogue the run sees
    valid_max_users: int | None = 500
    select_by: str = "in_domain"  # early stopping on the sources' validation users scored in-domain or intervened,
    # or (held_out) the training length chosen by the zero-shot score of held-out sources (inference/selection.py)
    held_out: tuple[str, ...] = ()  # select_by="held_out": the sources left out of the selection stage
    selection_stage: bool = False  # this run is that stage: trained without ``held_out``, selected on them zero-shot
    cold_items: float = 0.0  # the cold-item protocol: fraction of the targets' item ids removed from every source
    cold_seed: int = 0
    created: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.select_by not in SELECTIONS:
            raise ValueError(f"select_by must be one of {SELECTIONS}, got {self.select_by!r}")
        object.__setattr__(self, "held_out", tuple(self.held_out))  # a list when read from config.json
        if (self.select_by == "held_out") != bool(self.held_out):
            raise ValueError(f"select_by='held_out' needs the held-out sources (held_out), and held_out needs "
                             f"select_by='held_out'; got select_by={self.select_by!r}, held_out={self.held_out!r}")
        if self.selection_stage and not self.held_out:
            raise ValueError("selection_stage needs held_out (the sources the stage is not trained on)")
        if self.text_centering not in TEXT_CENTERINGS:
            raise ValueError(f"text_centering must be one of {TEXT_CENTERINGS}, got {self.text_centering!r}")

    def text_encoder(self, **options) -> TextEncoderConfig:
        """How the run's text vectors are made (its text model and centering; ``options``: the rest)."""
        return TextEncoderConfig(model=self.text_model, centering=self.text_centering, **options)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict) -> "RunConfig":
        nested = {"model": PreRecConfig, "train": TrainConfig, "sequences": SequenceConfig,
                  "popularity": PopularityConfig}
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in payload.items() if k in known}
        for key, klass in nested.items():
            values = dict(kwargs[key])
            for tuple_field in ("split",):
                if tuple_field in values:
                    values[tuple_field] = tuple(values[tuple_field])
            kwargs[key] = klass(**values)
        return cls(**kwargs)

    def run_name(self) -> str:
        return f"{self.method}-{self.guide}-seed{self.train.seed}-{self.created}"

    def trained_sources(self, sources: tuple[str, ...]) -> tuple[str, ...]:
        """The benchmark's ``sources`` this run is trained on: all of them, or without ``held_out`` in the
        selection stage."""
        return tuple(name for name in sources if not (self.selection_stage and name in self.held_out))

    def cold_protocol(self) -> tuple[float, int]:
        """(cold_items, cold_seed) as they shape the sources: (0.0, 0) whenever no item is removed."""
        return (float(self.cold_items), int(self.cold_seed)) if self.cold_items > 0 else (0.0, 0)


def save_run_config(run_dir: Path, config: RunConfig) -> None:
    save_json(Path(run_dir) / "config.json", config.to_json())


def load_run_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_json(load_json(Path(run_dir) / "config.json"))


def build_model(config: RunConfig, data: MultiDomainData, item_text: torch.Tensor) -> PreRecModel:
    """A fresh model whose ``users`` plate is ``data``'s training users (the parameter store is cleared: docs/DESIGN.md
    pitfall 8)."""
    pyro.clear_param_store()
    item_key = torch.as_tensor(data.item_keys()[0])  # [J]
    return PreRecModel(config.model, len(data.domains), data.n_fit_users, item_text,
                       item_key).to(config.train.device)


def load_nets(run_dir: Path, model: PreRecModel, checkpoint: str = "best.pt") -> None:
    """Load a run's network weights into ``model`` (built for any catalogue: the nets do not depend on it)."""
    state = load_checkpoint(Path(run_dir) / checkpoint, model.item_text.device)
    model.load_state_dict(state["model"])


def load_run(run_dir: Path, data: MultiDomainData, item_text: torch.Tensor, first_batch,
             checkpoint: str = "best.pt", config: RunConfig | None = None, state: dict | None = None):
    """Rebuild a run's model and guide on its source ``data`` and load a checkpoint into both (``config`` and the
    checkpoint's ``state``, when given, instead of reading them from ``run_dir``)."""
    config = config or load_run_config(run_dir)
    model = build_model(config, data, item_text)
    guide = make_guide(config.guide, model, name="pretrain")
    guide(first_batch)  # autoguides create their parameters on first call
    state = state or load_checkpoint(Path(run_dir) / checkpoint, config.train.device)
    model.load_state_dict(state["model"])
    guide.load_state_dict(state["guide"])
    return config, model, guide


def common_cold_protocol(runs: dict[str, Path], configs: dict[str, RunConfig] | None = None) -> tuple[float, int]:
    """The (cold_items, cold_seed) that runs ``{label: run_dir}`` share (their ``configs`` when already read);
    ValueError naming them when they differ (a benchmark rebuilt for one of them would not be the data the others
    were pre-trained on)."""
    configs = configs or {label: load_run_config(run) for label, run in runs.items()}
    protocols = {label: configs[label].cold_protocol() for label in runs}
    if len(set(protocols.values())) > 1:
        described = ", ".join(f"{label} ({runs[label]}): cold_items={c}, cold_seed={s}"
                              for label, (c, s) in protocols.items())
        raise ValueError(f"runs pre-trained under different cold-item protocols cannot share one benchmark: "
                         f"{described}; pass runs of one protocol (--run / --run-n)")
    return next(iter(protocols.values()), (0.0, 0))


RUN_STATES = ("running", "interrupted", "failed", "finished")


def save_run_state(run_dir: Path, state: str, reason: str | None = None) -> None:
    """Record where a run stands (``state.json``): running (with its owner, this process), interrupted or failed
    (resumable with --resume; ``reason`` says why it failed) or finished."""
    assert state in RUN_STATES, state
    payload = {"state": state, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
    if state == "running":
        payload["owner"] = {"pid": os.getpid(), "host": socket.gethostname()}
    if reason:
        payload["reason"] = reason
    save_json(Path(run_dir) / "state.json", payload)


def run_state(run_dir: Path) -> str:
    """A run's recorded state; a run written before states were recorded is finished when its metrics exist. A run
    whose owner has died while it was running reads as interrupted."""
    run_dir = Path(run_dir)
    if (run_dir / "state.json").exists():
        payload = load_json(run_dir / "state.json")
        if payload["state"] == "running" and live_owner(payload) is None:
            return "interrupted"
        return payload["state"]
    return "finished" if (run_dir / "metrics.json").exists() else "interrupted"


def live_owner(payload: dict) -> str | None:
    """"process PID on HOST" when the running run's owner is alive (or on another host, where this cannot be told),
    else None (its process has ended: the run may be resumed)."""
    owner = payload.get("owner")
    if payload.get("state") != "running" or not owner:
        return None
    if owner["host"] == socket.gethostname():
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, another user's
            pass
    return f"process {owner['pid']} on {owner['host']}"


def check_writable(run_dir: Path) -> None:
    """Refuse to resume a run that a live process is still training: one owner per run."""
    path = Path(run_dir) / "state.json"
    owner = live_owner(load_json(path)) if path.exists() else None
    if owner is not None and owner != f"process {os.getpid()} on {socket.gethostname()}":
        raise ValueError(f"{run_dir} is being trained by {owner}; wait for it to finish (or stop that process) "
                         "before resuming it")


def check_finished(run_dir: Path, method: str | None = None) -> RunConfig:
    """The config of a finished run (of ``method`` when given); a ValueError saying what to do otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not a run directory (no config.json; runs are written by "
                         "scripts/map_pretrain.py)")
    state = run_state(run_dir)
    if state == "running":
        owner = live_owner(load_json(run_dir / "state.json"))
        raise ValueError(f"{run_dir}: the run is still being trained by {owner}; wait for it to finish")
    if state != "finished":
        raise ValueError(f"{run_dir}: the run is {state}, not finished; continue it with "
                         f"python scripts/map_pretrain.py --resume {run_dir}")
    config = load_run_config(run_dir)
    if method is not None and config.method != method:
        raise ValueError(f"{run_dir} is a {config.method} run; expected a {method} run")
    return config


def find_latest_run(root: Path, benchmark: str, method: str, state: str = "finished") -> Path | None:
    """The most recently created run of ``method`` on ``benchmark`` (a name or a TOML file) under ``root``, in the
    benchmark's folder there, whose ``run_state`` is ``state`` (finished by default: running and interrupted runs are
    passed over; "interrupted" finds one to resume)."""
    if state not in RUN_STATES:
        raise ValueError(f"state must be one of {RUN_STATES}, got {state!r}")
    benchmark = get_benchmark(benchmark)
    folder = Path(root) / benchmark.folder
    runs = []
    for config_path in folder.glob("*/config.json") if folder.is_dir() else []:
        payload = load_json(config_path)
        if (payload.get("method") == method and payload.get("benchmark") == benchmark.name
                and run_state(config_path.parent) == state):
            runs.append((payload.get("created", ""), config_path.parent))
    return max(runs)[1] if runs else None


def prepare_for_run(config: RunConfig, benchmark: str | None = None, data_dir: str | Path | None = None,
                    cold: tuple[float, int] | None = None) -> PreparedBenchmark:
    """The data a run is scored on, prepared as the run saw it (its sequences, popularity factors, text model and
    cold-item protocol ``cold``, default the run's own).

    ``benchmark`` None (or the run's own): the run's benchmark, read from ``data_dir`` or the run's data directory.
    Another benchmark (a name or a TOML file): its targets, read from ``data_dir``, with the run's own sources (read
    from the run's data directory), so a pre-trained run is scored zero-shot on targets defined anywhere; a target
    that is also one of the run's sources is refused."""
    own = get_benchmark(config.benchmark)
    cold_items, cold_seed = cold if cold is not None else config.cold_protocol()
    text = config.text_encoder()
    target = get_benchmark(benchmark) if benchmark else own
    mine = prepare_benchmark(own.name, config.data_dir if target.name != own.name else data_dir or config.data_dir,
                             config.sequences, config.popularity, text, cold_items=cold_items, cold_seed=cold_seed)
    trained = config.trained_sources(own.sources)
    if trained != own.sources:  # a held-out selection's first stage: the other sources only
        left_out = tuple(name for name in own.sources if name not in trained)  # scored zero-shot, like targets
        mine = replace(mine, benchmark=replace(mine.benchmark, sources=trained, targets=left_out + own.targets),
                       sources=MultiDomainData.from_domains([mine.domains[name] for name in trained],
                                                            mine.popularity, mine.sequences), _targets={})
    if target.name == own.name:
        return mine
    clash = sorted(set(target.targets) & set(trained))
    if clash:
        raise ValueError(f"{target.name}: target(s) {clash} are sources of the run's benchmark {own.name!r}; "
                         "zero-shot needs domains the run has not been trained on")
    domains = {d.name: d for d in target.load(Path(data_dir) if data_dir else None)}
    missing = [name for name in target.targets if name not in domains]
    if missing:
        raise ValueError(f"benchmark {target.name!r}: the data has no domain(s) {missing}; found {sorted(domains)}")
    combined = replace(target, sources=trained,
                       description=f"{own.name}'s sources (the run's) -> {target.name}'s targets")
    sources = {name: mine.domains[name] for name in trained}
    return replace(mine, benchmark=combined, domains={**sources, **{n: domains[n] for n in target.targets}},
                   _targets={})
