"""A training step makes no host-device synchronisation of its own (issue: performance).

On a CPU there is no device to wait for, so the test counts the calls that would wait on a GPU: reading a tensor's
value into Python (``item``, ``tolist``, ``bool``, ``float``, ``int``) and ops whose output size depends on the data
(``nonzero``, ``unique``, ...). ``torch.optim`` is left out: Adam reads its step counters, which live on the host."""

import math
from dataclasses import replace

import pytest
import torch
from torch.overrides import TorchFunctionMode

from prerec_pyro.data.batches import BatchBuilder
from prerec_pyro.inference.guides import make_guide
from prerec_pyro.inference.map import MapTrainer, TrainConfig, map_loss
from prerec_pyro.models.prerec import PreRecConfig, PreRecModel

SYNCING = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero", "unique", "argwhere",
           "masked_select", "repeat_interleave", "bincount", "cpu", "numpy"}
CONFIG = PreRecConfig.recommended(hidden_dim=16, n_heads=2, max_len=8)


class SyncCounter(TorchFunctionMode):
    """Counts the tensor calls that wait for the device, outside ``torch.optim``."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING:
            import traceback

            where = [frame for frame in traceback.extract_stack()[:-1] if "torch/optim" not in frame.filename]
            if len(where) == len(traceback.extract_stack()[:-1]):
                self.calls.append(f"{name} at {where[-1].filename.rsplit('/', 1)[-1]}:{where[-1].lineno}")
        return func(*args, **(kwargs or {}))


def trainer_and_batches(data, text, kind="delta"):
    model = PreRecModel(CONFIG, len(data.domains), data.n_fit_users, text, torch.as_tensor(data.item_keys()[0]))
    trainer = MapTrainer(model, make_guide(kind, model), data, TrainConfig(n_negatives=15, batch_size=4))
    trainer._setup()
    builder, generator = BatchBuilder(data, n_negatives=15), torch.Generator().manual_seed(0)
    batches = [builder.make(domain, data.domains[domain].windows(data.domains[domain].users_in("train")[:4],
                                                                 data.sequences), generator)
               for domain in range(len(data.domains))]
    return trainer, batches


@pytest.mark.parametrize("kind", ["delta", "sparse-delta", "normal"])
def test_a_training_step_makes_no_sync(tiny_sources, encode_hash, kind):
    trainer, batches = trainer_and_batches(tiny_sources, encode_hash(tiny_sources), kind)
    with SyncCounter() as first:
        trainer.step(batches[0])  # the first step goes through Pyro's validated Trace_ELBO
    assert any(call.startswith("item at util.py") for call in first.calls), "the counter must see Pyro's syncs"
    with SyncCounter() as counter:
        for batch in batches:
            trainer.step(batch)
    assert counter.calls == []


def test_the_sync_free_loss_is_trace_elbos(tiny_sources, encode_hash):
    """``map_loss`` (the steps after the first) equals Pyro's ``Trace_ELBO`` on the same batch and values."""
    trainer, batches = trainer_and_batches(tiny_sources, encode_hash(tiny_sources))
    trainer.model.eval()
    with torch.no_grad():
        pyro_loss = trainer.elbo.differentiable_loss(trainer.scaled_model, trainer.scaled_guide, batches[1])
        ours = map_loss(trainer.scaled_model, trainer.scaled_guide, batches[1])
    assert math.isclose(float(ours), float(pyro_loss), rel_tol=1e-6)


def test_a_nan_loss_is_found_at_the_next_check_naming_its_step(tiny_sources, encode_hash):
    text = encode_hash(tiny_sources)
    model = PreRecModel(CONFIG, len(tiny_sources.domains), tiny_sources.n_fit_users, text,
                        torch.as_tensor(tiny_sources.item_keys()[0]))
    config = TrainConfig(n_negatives=15, batch_size=4, max_epochs=1, check_every=3)
    trainer = MapTrainer(model, make_guide("delta", model), tiny_sources, config)
    trainer._setup()
    step = trainer.step
    calls = []

    def poisoned(batch, shares=None):  # the fifth step's loss is NaN
        calls.append(1)
        loss = step(batch, shares)
        return loss * float("nan") if len(calls) == 5 else loss

    trainer.step = poisoned
    with pytest.raises(FloatingPointError, match="loss became nan at step 4 of epoch 0"):
        trainer.fit()
    assert len(calls) == 6  # read back after steps 3 and 6


def test_check_every_is_validated():
    with pytest.raises(ValueError, match="check_every"):
        replace(TrainConfig(), check_every=0)
