"""A target with nothing to evaluate is an error naming it, never a table of NaN beside a Random row."""

import pandas as pd
import pytest

from prerec_pyro.baselines.simple import PopScorer
from prerec_pyro.evaluate import EvalConfig, random_summary
from prerec_pyro.inference.zero_shot import score_target
from prerec_pyro.pipeline import prepare_benchmark


def test_a_target_whose_users_have_one_interaction_each_is_refused(tmp_path):
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(6)], "text": [f"item {j}" for j in range(6)]})
    rows = [(f"s{u}", f"i{(u + t) % 6}", 1_600_000_000 + 86_400 * t, "src") for u in range(8) for t in range(4)]
    rows += [(f"t{u}", f"i{u % 6}", 1_600_000_000 + 3600 * u, "tgt") for u in range(10)]
    items.to_csv(tmp_path / "items.csv", index=False)
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "domain"]).to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "b.toml").write_text('sources = ["src"]\ntargets = ["tgt"]\nk_percent = 50\n'
                                     '[data]\nitems = "items.csv"\ninteractions = "log.csv"\n')
    prepared = prepare_benchmark(str(tmp_path / "b.toml"))
    with pytest.raises(ValueError, match="target 'tgt': no test user has a position with history"):
        score_target(prepared, "tgt", [PopScorer()], EvalConfig(k_percent=50.0, n_boot=10))
    assert random_summary(6, EvalConfig(k_percent=50.0), 0) == {"n_samples": 0}
