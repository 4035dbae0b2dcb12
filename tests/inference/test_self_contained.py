"""A run directory is an artefact: copied anywhere, it recommends, serves and scores a new catalogue without any of
its sources' data (sources.pt), and a run written before that file existed derives it once."""

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

from prerec_pyro import PretrainedRun
from prerec_pyro.inference import pretrained as pretrained_module
from prerec_pyro.inference.pretrained import SOURCES_FILE

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TARGET = "japan"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def no_source_data(monkeypatch):
    """Any attempt to build a benchmark (the sources' data) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("read the sources' data")

    monkeypatch.delenv("PREREC_DATA_DIR", raising=False)
    monkeypatch.setattr(pretrained_module, "prepare_for_run", refuse)
    monkeypatch.setattr("prerec_pyro.pipeline.prepare_benchmark", refuse)


@pytest.fixture
def catalogue(pretrained_shared, tmp_path):
    _, prepared = pretrained_shared
    domain = prepared.domains[TARGET]
    domain.items.to_csv(tmp_path / "items.csv", index=False)
    domain.interactions.to_csv(tmp_path / "histories.csv", index=False)
    domain.interactions[["item_id", "timestamp"]].to_csv(tmp_path / "recent.csv", index=False)
    return domain, tmp_path


def scores_of(run_dir, domain, samples=0, backdoor_from="prior"):
    shop = PretrainedRun.load(run_dir).on_domain(domain.items, recent_interactions=domain.interactions,
                                                 samples=samples, backdoor_from=backdoor_from)
    histories = [list(domain.items["item_id"][i: i + 4]) for i in range(0, 40, 4)]
    return shop.score(histories)


def test_a_copied_run_recommends_serves_and_scores_without_its_sources(pretrained_shared, catalogue, tmp_path,
                                                                      monkeypatch):
    run_dir, _ = pretrained_shared
    domain, folder = catalogue
    assert (run_dir / SOURCES_FILE).exists(), "pre-training must write the run's source summary"
    in_place = {(s, b): scores_of(run_dir, domain, s, b) for s, b in ((0, "prior"), (3, "posterior"))}
    recommend = load_script("recommend")
    argv = ["--items", str(folder / "items.csv"), "--histories", str(folder / "histories.csv"), "--interactions",
            str(folder / "recent.csv"), "--k", "5"]
    recommend.main(recommend.parse_args(["--run", str(run_dir), *argv, "--out", str(folder / "in_place")]))
    moved = tmp_path / "elsewhere" / run_dir.name
    shutil.copytree(run_dir, moved)
    no_source_data(monkeypatch)
    for (samples, backdoor_from), expected in in_place.items():
        torch.testing.assert_close(scores_of(moved, domain, samples, backdoor_from), expected, rtol=0, atol=0)
    recommend.main(recommend.parse_args(["--run", str(moved), *argv, "--out", str(folder / "moved")]))
    pd.testing.assert_frame_equal(pd.read_csv(folder / "moved" / "recommendations.csv"),
                                  pd.read_csv(folder / "in_place" / "recommendations.csv"))
    recommend.main(recommend.parse_args(["--run", str(moved), *argv, "--weigh-sequence", "--out",
                                         str(folder / "weighed")]))
    weighed = pd.read_csv(folder / "weighed" / "recommendations.csv")
    assert len(weighed) == len(pd.read_csv(folder / "moved" / "recommendations.csv"))  # same users, same k
    fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    apps = []  # serve.py hands its app to uvicorn.run: a stand-in module keeps it instead of listening
    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(run=lambda app, **kwargs: apps.append(app)))
    serve = load_script("serve")
    serve.main(serve.parse_args(["--run", str(moved), "--items", str(folder / "items.csv"), "--interactions",
                                 str(folder / "recent.csv")]))
    history = list(domain.items["item_id"][:4])
    reply = TestClient(apps[0]).post("/recommend", json={"history": history, "k": 5}).json()
    expected = PretrainedRun.load(moved).on_domain(domain.items, recent_interactions=domain.interactions)
    assert [item["item_id"] for item in reply["items"]] == list(expected.recommend(history, k=5)["item_id"])
    assert fastapi


def test_a_run_without_the_summary_derives_it_once_and_scores_the_same(pretrained_shared, catalogue, tmp_path,
                                                                      caplog):
    run_dir, _ = pretrained_shared
    domain, _ = catalogue
    old = tmp_path / "old" / run_dir.name
    shutil.copytree(run_dir, old)
    (old / SOURCES_FILE).unlink()
    expected = scores_of(run_dir, domain, 3, "posterior")
    torch.testing.assert_close(scores_of(old, domain, 3, "posterior"), expected, rtol=0, atol=0)
    assert f"has no {SOURCES_FILE}" in caplog.text and (old / SOURCES_FILE).exists()
    written, derived = torch.load(run_dir / SOURCES_FILE), torch.load(old / SOURCES_FILE)
    assert written["item_ids"] == derived["item_ids"] and written["text_dim"] == derived["text_dim"]
    torch.testing.assert_close(written["eps_v_shared"], derived["eps_v_shared"], rtol=0, atol=0)
    torch.testing.assert_close(written["domain_draws"], derived["domain_draws"], rtol=0, atol=0)
