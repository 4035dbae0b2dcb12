"""The plain networks: the text head's optional dropout on text dimensions and its residual form."""

import pytest
import torch

from prerec_pyro.models.config import PreRecConfig
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


def test_the_residual_text_head_starts_as_a_length_keeping_projection():
    """At initialisation the residual head is s·Q·X (W and b at 0): rows of Q orthonormal, lengths kept on average,
    cosines between texts nearly kept; its gradient reaches W and b; Q is a saved buffer, the same for every seed
    and drawn from its own generator (the global RNG moves as the linear head's construction moves it)."""
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(500, 384), dim=-1)  # [N, T]
    state = torch.random.get_rng_state()
    TextHead(384, 64)
    after_linear = torch.random.get_rng_state()
    torch.random.set_rng_state(state)
    head = TextHead(384, 64, residual=True)
    assert torch.equal(torch.random.get_rng_state(), after_linear)  # Q from its own generator
    torch.testing.assert_close(head.projection @ head.projection.T, torch.eye(64) * 6.0)  # s² = T / B = 6
    out = head(text)  # [N, B]
    assert torch.equal(out, text @ head.projection.T)
    assert abs(float(out.detach().norm(dim=-1).mean()) - 1.0) < 0.05
    near = text[1] + 0.5 * text[0]  # a text at cosine about 0.45 to text 0 (random texts: about 0)
    cosines = torch.stack([torch.cosine_similarity(text[0], near, dim=0),
                           torch.cosine_similarity(out[0], head(near), dim=0)]).detach()
    assert abs(float(cosines[0] - cosines[1])) < 0.2
    out.sum().backward()
    assert head.linear.weight.grad.abs().sum() > 0 and head.projection.grad is None
    assert set(head.state_dict()) == {"projection", "linear.weight", "linear.bias"}
    torch.manual_seed(1)
    assert torch.equal(TextHead(384, 64, residual=True).projection, head.projection)
    wide = TextHead(8, 16, residual=True)  # B > T: orthonormal columns, every length kept exactly
    small = torch.randn(5, 8)  # [N, T]
    torch.testing.assert_close(wide(small).norm(dim=-1), small.norm(dim=-1))


def test_the_text_head_flag_reaches_the_model_and_bad_values_are_refused():
    config = run_config_from_args(parse_run_args(["--benchmark", "synthetic-small", "--text-head", "residual"]))
    assert config.model.text_head == "residual"
    assert run_config_from_args(parse_run_args(["--benchmark", "synthetic-small"])).model.text_head == "linear"
    with pytest.raises(ValueError, match="text_head must be one of"):
        PreRecConfig(text_head="mlp")
