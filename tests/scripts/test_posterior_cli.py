"""scripts/posterior_study.py and the posterior options of map_pretrain.py / intervene_eval.py, with tiny
arguments (the tiny synthetic benchmark, hashed text vectors)."""

import json

import pandas as pd
import pytest
from test_cli import load_script, pretrain  # the CLI tests' helpers (tests/scripts is on sys.path under pytest)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREREC_CACHE_DIR", str(tmp_path / "cache"))


def test_a_structured_run_reports_its_posterior_and_the_study_writes_tables_and_a_figure(tmp_path, capsys):
    run_dir = pretrain(tmp_path, "--guide", "structured", "--scale-lr", "0.2")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["guide"], config["train"]["scale_lr"], config["train"]["elbo"]) == ("structured", 0.2, "trace")
    posterior = json.loads((run_dir / "metrics.json").read_text())["posterior"]
    assert len(posterior["D"]["posterior_std_per_domain"]) == 3 and posterior["eps_u"]["posterior_std_mean"] > 0
    script = load_script("posterior_study")
    tables = script.main(script.parse_args(["--run", str(run_dir), "--samples", "3", "--max-users", "10",
                                            "--top", "2", "--out", str(tmp_path / "study")]))
    settled = tables["convergence"].set_index("quantity")["value"]
    history = json.loads((run_dir / "history.json").read_text())["history"]
    assert settled["epochs run"] == len(history) and settled["training loss, last epoch"] == history[-1]["loss"]
    assert 0 < settled["posterior std / prior std, D"] < 2
    assert len(tables["domains"]) == 3  # pairs of the three sources
    assert (tables["domains"]["distance_low"] <= tables["domains"]["distance_high"]).all()
    assert set(tables["calibration"]["scorer"]) == {"MAP", "posterior predictive"}
    assert list(tables["items"]["end"]) == ["widest"] * 2 + ["narrowest"] * 2
    targets = tables["target_calibration"]  # zero-shot on each of synthetic-small's targets
    assert set(targets["scorer"]) == {"Eq. 8", "back-door over the posterior D_k"} and (targets["n"] > 0).all()
    coverage = tables["coverage"]  # synthetic-small: the planted truth is known
    assert list(coverage["level"]) == [0.5, 0.9] * 3 and coverage["coverage"].between(0, 1).all()
    wide = coverage.set_index(["domain", "level"])["mean_width"]
    assert (wide.xs(0.9, level="level") >= wide.xs(0.5, level="level")).all()
    assert coverage["planted_mean"].between(0, 1).all() and (coverage["mean_width"] > 0).all()
    for name in ("domains", "calibration", "reliability", "items", "target_calibration", "coverage"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "study" / f"posterior_{name}.csv"), tables[name],
                                      check_dtype=False)
    assert (tmp_path / "study" / "posterior_study.png").stat().st_size > 0
    assert "calibration:" in capsys.readouterr().out


def test_a_map_run_has_collapsed_intervals_and_agreeing_scorers(tmp_path):
    run_dir = pretrain(tmp_path)
    script = load_script("posterior_study")
    tables = script.main(script.parse_args(["--run", str(run_dir), "--samples", "2", "--max-users", "10"]))
    domains = tables["domains"]
    pd.testing.assert_series_equal(domains["distance_low"], domains["distance_high"], check_names=False)
    for column in ("ece", "log_lik"):
        both = tables["calibration"].pivot(index="domain", columns="scorer", values=column)
        pd.testing.assert_series_equal(both["MAP"], both["posterior predictive"], check_names=False)
    assert (tables["calibration"]["log_lik"] < 0).all()
    assert tables["items"].empty and (run_dir / "posterior_study.png").exists()
    assert not tables["convergence"]["quantity"].str.startswith("posterior std").any()  # no scales to report
    assert (tables["coverage"]["mean_width"] == 0).all()  # a point estimate: intervals of width 0


def test_intervene_eval_backdoor_over_the_posterior_is_recorded(tmp_path):
    pretrain(tmp_path)
    script = load_script("intervene_eval")
    args = script.parse_args(["--benchmark", "synthetic-small", "--target", "japan", "--runs", str(tmp_path / "runs"),
                              "--n-boot", "20", "--samples", "3", "--backdoor-from", "posterior",
                              "--out", str(tmp_path / "eval")])
    table = script.main(args)
    assert any("posterior D_k" in method for method in table["method"])
    [written] = (tmp_path / "eval").glob("*posterior_d.json")
    assert json.loads(written.read_text())["backdoor_from"] == "posterior"


def test_bad_posterior_flags_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        load_script("posterior_study").parse_args(["--run", str(tmp_path), "--samples", "0"])
    with pytest.raises(SystemExit):
        load_script("map_pretrain").parse_args(["--scale-lr", "-1"])
