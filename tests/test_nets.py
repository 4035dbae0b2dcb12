"""The plain networks: the text head's optional dropout on text dimensions."""

import torch

from prerec_pyro.nets import TextHead
from prerec_pyro.run_flags import parse_run_args, run_config_from_args


def test_the_text_head_without_dropout_draws_no_random_number():
    """``dropout=0`` (the default) is the linear head alone, in training too, and leaves the RNG where it was: a run
    without the option trains exactly as before it existed."""
    head = TextHead(6, 3).train()
    text = torch.randn(4, 6)
    state = torch.random.get_rng_state()
    out = head(text)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(out, head.linear(text))
    assert set(head.state_dict()) == set(TextHead(6, 3, dropout=0.2).state_dict()) == {"linear.weight", "linear.bias"}


def test_the_text_heads_dropout_drops_dimensions_while_training_only():
    torch.manual_seed(0)
    head = TextHead(200, 3, dropout=0.5)
    text = torch.ones(1, 200)
    head.train()
    dropped = head.dropout(text)  # [1, 200]
    assert 0.3 < float((dropped == 0).float().mean()) < 0.7
    assert torch.equal(dropped[dropped != 0], torch.full_like(dropped[dropped != 0], 2.0))
    head.eval()
    assert torch.equal(head(text), head.linear(text))


def test_the_text_dropout_flag_reaches_the_model_config():
    config = run_config_from_args(parse_run_args(["--benchmark", "synthetic-small", "--text-dropout", "0.2"]))
    assert config.model.text_dropout == 0.2
    assert run_config_from_args(parse_run_args(["--benchmark", "synthetic-small"])).model.text_dropout == 0.0
