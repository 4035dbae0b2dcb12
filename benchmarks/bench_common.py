"""Helpers shared by the benchmark scripts: flags, side-by-side timing, peak memory, synthetic data, JSON output.

Timing protocol (``alternate``): every contender runs ``warmup`` times first, then ``repeats`` rounds in which each
contender runs once, the order rotated by one every round (no contender always runs first or right after the same
one). The reported time is the median over rounds; a ratio is the median over rounds of the per-round ratio. All
contenders live in one process with the same torch threads, so a ratio compares like with like on a machine shared
with other jobs. CUDA work is synchronised around every timed call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyro
import torch

from prerec_pyro.data.dataset import MultiDomainData, SequenceConfig
from prerec_pyro.data.synthetic import SyntheticConfig, generate_synthetic, load_synthetic, write_synthetic
from prerec_pyro.io import atomic_write
from prerec_pyro.models.prerec import RECOMMENDED_POPULARITY_MODE, TRANSFORMER_DTYPES, PreRecConfig
from prerec_pyro.popularity import PopularityConfig
from prerec_pyro.text import HashBowEncoder

logger = logging.getLogger(__name__)


# ---- flags ----------------------------------------------------------------------------------------------------------
def add_common_args(parser: argparse.ArgumentParser, repeats: int = 5, warmup: int = 1) -> None:
    """--device, --out, --threads, --repeats, --warmup, --seed."""
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to run (default: cpu)")
    parser.add_argument("--out", default=None, help="write the results to this JSON file (atomically)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed rounds; the median is reported "
                                                                      f"(default: {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs of each contender first "
                                                                    f"(default: {warmup})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def add_model_args(parser: argparse.ArgumentParser, hidden_dim: int = 64, heads: int = 2) -> None:
    """--hidden-dim, --heads, --layers, --transformer-dtype (the CPU-sized defaults; the paper uses B = 256)."""
    parser.add_argument("--hidden-dim", type=int, default=hidden_dim, help=f"embedding size B (default: "
                                                                            f"{hidden_dim}; paper: 256)")
    parser.add_argument("--heads", type=int, default=heads, help=f"attention heads (default: {heads})")
    parser.add_argument("--layers", type=int, default=2, help="Transformer layers (default: 2, as the paper)")
    parser.add_argument("--transformer-dtype", default="float32", choices=TRANSFORMER_DTYPES,
                        help="bfloat16 runs the Transformer layers under autocast (a GPU option; default: float32)")


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    """--config: what is timed, the library's default (``recommended``) or the paper's Eq. 6 as written."""
    parser.add_argument("--config", default="recommended", choices=("recommended", "eq6"),
                        help="the library's default configuration (sliding popularity, shared item offsets, the "
                             "text channel, the repeat term) or the paper's Eq. 6 as written")


def model_config(args: argparse.Namespace, max_len: int | None = None) -> PreRecConfig:
    """``--config`` at the benchmark's sizes (``--hidden-dim``, ``--layers``, ``--heads``, ``--transformer-dtype``
    and ``max_len``, default ``--max-len``)."""
    sizes = {"hidden_dim": args.hidden_dim, "n_layers": args.layers, "n_heads": args.heads,
             "max_len": max_len or args.max_len, "transformer_dtype": args.transformer_dtype}
    return PreRecConfig.recommended(**sizes) if getattr(args, "config", "eq6") == "recommended" else \
        PreRecConfig(**sizes)


def popularity_mode(args: argparse.Namespace) -> str:
    """The popularity windows ``--config`` trains with: sliding for the default, Eq. 6's intervals."""
    return RECOMMENDED_POPULARITY_MODE if getattr(args, "config", "eq6") == "recommended" else "interval"


def add_synthetic_args(parser: argparse.ArgumentParser) -> None:
    """Sizes of the synthetic source domains (``SyntheticConfig``), the window length and the text dimension."""
    base = SyntheticConfig()
    parser.add_argument("--source-users", type=int, default=base.source_users,
                        help=f"users per source domain, 3 sources (default: {base.source_users})")
    parser.add_argument("--items-per-domain", type=int, default=base.items_per_domain,
                        help=f"shared-pool items per domain (default: {base.items_per_domain})")
    parser.add_argument("--unique-items", type=int, default=base.unique_items_per_domain,
                        help=f"items only one domain has (default: {base.unique_items_per_domain})")
    parser.add_argument("--pool-items", type=int, default=base.n_pool_items,
                        help=f"item pool (raised to --items-per-domain if smaller; default: {base.n_pool_items})")
    parser.add_argument("--min-seq-len", type=int, default=base.min_seq_len,
                        help=f"shortest sequence (default: {base.min_seq_len})")
    parser.add_argument("--mean-seq-len", type=float, default=base.mean_seq_len,
                        help=f"mean sequence length (default: {base.mean_seq_len})")
    parser.add_argument("--max-seq-len", type=int, default=base.max_seq_len,
                        help=f"longest sequence (default: {base.max_seq_len})")
    parser.add_argument("--max-len", type=int, default=64, help="window length / history of the model "
                                                                 "(default: 64, as the paper)")
    parser.add_argument("--text-dim", type=int, default=384, help="dimension of the hashed text vectors "
                                                                   "(default: 384, MiniLM's)")
    parser.add_argument("--data-cache", default=None, help="folder to keep the generated data in and reuse "
                                                           "(keyed by its config; default: regenerate)")


def setup(args: argparse.Namespace) -> torch.device:
    """Check the device, set threads and seeds; returns the torch device."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    return torch.device(args.device)


# ---- timing ---------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``fn`` (CUDA synchronised before and after)."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def alternate(runs: dict[str, Callable[[], object]], repeats: int, warmup: int,
              device: torch.device) -> dict[str, list[float]]:
    """Seconds of each run per round, measured side by side (see the module docstring)."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            seconds[name].append(timed(runs[name], device))
    return seconds


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]``: the two ran side by side in round i, so a slow
    spell of a shared machine that hits one round cancels out of its ratio."""
    assert len(numerator) == len(denominator) > 0
    return median([a / b for a, b in zip(numerator, denominator)])


# ---- memory ---------------------------------------------------------------------------------------------------------
def reset_peak_memory(device: torch.device) -> str:
    """Reset the peak-memory counter; returns what will be measured (CUDA allocator or process RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda max_memory_allocated"
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (Linux >= 4.0)
        return "process peak RSS (VmHWM, reset per measurement)"
    except OSError as error:
        logger.warning("cannot reset the peak RSS (%s): the peak is the process's lifetime peak", error)
        return "process lifetime peak RSS (not resettable here)"


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. ``VmRSS``) in MiB, or None where there is no such file."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return None


def current_memory_mb(device: torch.device) -> float:
    """Memory in use now, in MiB: CUDA tensors, or the process RSS on CPU (0 where unknown)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return _status_mb("VmRSS") or 0.0


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last ``reset_peak_memory``, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ---- data -----------------------------------------------------------------------------------------------------------
def synthetic_config(args: argparse.Namespace, seed: int = 0) -> SyntheticConfig:
    """The synthetic benchmark sized by the flags (targets are kept tiny: the benchmarks use the sources)."""
    return SyntheticConfig(n_pool_items=max(args.pool_items, args.items_per_domain),
                           items_per_domain=args.items_per_domain, unique_items_per_domain=args.unique_items,
                           source_users=args.source_users, target_users=1, min_seq_len=args.min_seq_len,
                           mean_seq_len=args.mean_seq_len, max_seq_len=args.max_seq_len, seed=seed)


def cache_folder(args: argparse.Namespace) -> Path:
    """Where ``--data-cache`` keeps the synthetic data of these sizes."""
    key = hashlib.sha1(json.dumps(asdict(synthetic_config(args)), sort_keys=True).encode()).hexdigest()[:12]
    return Path(args.data_cache) / f"synthetic-{key}"


def ensure_cached(args: argparse.Namespace) -> float:
    """Generate the synthetic data into ``--data-cache`` unless it is there (or there is no cache); the seconds."""
    if not args.data_cache or (cache_folder(args) / "manifest.json").exists():
        return 0.0
    started = time.perf_counter()
    write_synthetic(synthetic_config(args), cache_folder(args))
    return time.perf_counter() - started


def synthetic_sources(args: argparse.Namespace, popularity_mode: str = "interval") -> tuple[MultiDomainData,
                                                                                             torch.Tensor]:
    """The synthetic source domains, indexed with windows of ``--max-len`` and popularity factors of
    ``popularity_mode``, and hashed text vectors [J, T]."""
    config = synthetic_config(args)
    if args.data_cache:
        ensure_cached(args)
        generated = load_synthetic(cache_folder(args))
    else:
        generated = generate_synthetic(config)
    domains = [generated.domain(name) for name in generated.sources]
    data = MultiDomainData.from_domains(domains, popularity=PopularityConfig(mode=popularity_mode),
                                        sequences=SequenceConfig(max_len=args.max_len))
    text = HashBowEncoder(args.text_dim).encode(data.all_texts())
    return data, torch.as_tensor(text, dtype=torch.float32)


def cut_batch(batch):
    """A ``PreRecBatch`` cut to its longest window (every later position is padding). The model is causal, so
    every kept position gets the same logits."""
    length = int(torch.nonzero(batch.target_mask.any(0)).max()) + 1
    return replace(batch, items=batch.items[:, :length], targets=batch.targets[:, :length],
                   target_mask=batch.target_mask[:, :length], period_index=batch.period_index[:, :length],
                   factors_targets=batch.factors_targets[:, :length])


# ---- output ---------------------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict:
    """What the numbers were measured on."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": str(device), "device_name": name, "torch": torch.__version__, "pyro": pyro.__version__,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "python": platform.python_version()}


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (``prerec_pyro.io.atomic_write``)."""
    text = json.dumps(payload, indent=1, default=_jsonable).encode()
    atomic_write(path, lambda stream: stream.write(text))


def _jsonable(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table of ``rows`` (floats with 4 significant digits)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    cells = [[cell(row.get(col, "")) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.ljust(w) for col, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join(lines)
