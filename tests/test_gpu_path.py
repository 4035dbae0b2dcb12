"""The GPU path (``--device cuda``): batches, MAP training with each guide, evaluation, the benchmarks' code paths.

Marked ``gpu`` and skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on a GPU machine."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.evaluate import EvalConfig, evaluate_domain
from prerec_pyro.inference.guides import make_guide
from prerec_pyro.inference.intervene import InterventionScorer
from prerec_pyro.inference.map import MapTrainer, TrainConfig
from prerec_pyro.inference.scoring import MapScorer
from prerec_pyro.models.prerec import PreRecConfig, PreRecModel

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda)")]
CONFIG = PreRecConfig(hidden_dim=16, n_heads=2, max_len=8)
CUDA = torch.device("cuda")


def test_batches_land_on_the_gpu(tiny_sources):
    dom = tiny_sources.domains[0]
    windows = dom.windows(dom.users_in("train")[:6], tiny_sources.sequences)
    for negatives in (15, None):
        batch = BatchBuilder(tiny_sources, n_negatives=negatives, device=CUDA).make(0, windows)
        tensors = [v for v in vars(batch).values() if isinstance(v, torch.Tensor)]
        assert tensors and all(t.is_cuda for t in tensors)


@pytest.mark.parametrize("kind", ["delta", "sparse-delta", "normal"])
def test_map_training_runs_on_the_gpu(kind, tiny_sources, encode_hash):
    model = PreRecModel(CONFIG, len(tiny_sources.domains), tiny_sources.n_fit_users,
                        encode_hash(tiny_sources)).to(CUDA)
    guide = make_guide(kind, model, name=f"gpu_{kind}")
    config = TrainConfig(n_negatives=15, batch_size=16, lr=3e-3, max_epochs=1, max_steps_per_epoch=4, device="cuda")
    state = MapTrainer(model, guide, tiny_sources, config).fit()
    assert np.isfinite(state["history"][-1]["loss"])
    assert all(p.is_cuda for p in list(model.parameters()) + list(guide.parameters()))
    result = evaluate_domain(MapScorer(model, guide), tiny_sources, 0, EvalConfig(k_percent=5.0, device="cuda"))
    assert len(result.ranks) > 0


def test_bfloat16_transformer_trains_on_the_gpu(tiny_sources, encode_hash):
    config = replace(CONFIG, transformer_dtype="bfloat16")
    model = PreRecModel(config, len(tiny_sources.domains), tiny_sources.n_fit_users, encode_hash(tiny_sources)).to(CUDA)
    guide = make_guide("delta", model, name="gpu_bf16")
    train = TrainConfig(n_negatives=15, batch_size=16, lr=3e-3, max_epochs=1, max_steps_per_epoch=4, device="cuda")
    state = MapTrainer(model, guide, tiny_sources, train).fit()
    assert np.isfinite(state["history"][-1]["loss"])


def test_gpu_ranks_match_the_cpu(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    torch.manual_seed(0)
    cpu_model = PreRecModel(CONFIG, len(tiny_sources.domains), tiny_sources.n_fit_users, text)
    gpu_model = PreRecModel(CONFIG, len(tiny_sources.domains), tiny_sources.n_fit_users, text).to(CUDA)
    gpu_model.load_state_dict(cpu_model.state_dict())
    config = EvalConfig(k_percent=5.0)
    on_cpu = evaluate_domain(InterventionScorer(cpu_model), tiny_sources, 1, config)
    on_gpu = evaluate_domain(InterventionScorer(gpu_model), tiny_sources, 1, EvalConfig(k_percent=5.0, device="cuda"))
    np.testing.assert_array_equal(on_cpu.users, on_gpu.users)
    assert np.mean(np.abs(on_cpu.ranks - on_gpu.ranks) <= 1.0) > 0.99  # float rounding may swap near-ties only
