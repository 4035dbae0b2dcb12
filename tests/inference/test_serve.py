"""The HTTP endpoint (prerec_pyro.serve): answers as the API does, and validates with a 4xx, never a 500."""

import pytest

fastapi = pytest.importorskip("fastapi", reason="the serve extra (pip install -e '.[serve]') is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from prerec_pyro import PretrainedRun  # noqa: E402
from prerec_pyro.serve import create_app  # noqa: E402


@pytest.fixture
def served(pretrained):
    run_dir, prepared = pretrained
    domain = prepared.domains["japan"]
    recommender = PretrainedRun.load(run_dir).on_domain(domain.items, recent_interactions=domain.interactions)
    return TestClient(create_app(recommender, max_k=20)), recommender, list(domain.items["item_id"])


def test_recommend_answers_as_the_api_does(served):
    client, recommender, catalogue = served
    assert client.get("/health").json() == {"status": "ok", "n_items": len(catalogue)}
    reply = client.post("/recommend", json={"history": catalogue[:3], "k": 5})
    assert reply.status_code == 200
    expected = recommender.recommend(catalogue[:3], k=5)
    assert [item["item_id"] for item in reply.json()["items"]] == list(expected["item_id"])
    assert [item["score"] for item in reply.json()["items"]] == pytest.approx(list(expected["score"]))


@pytest.mark.parametrize("body, message", [
    ({"history": [], "k": 5}, "at least 1"),
    ({"history": ["no-such-item"], "k": 5}, "not in the catalogue"),
    ({"history": None, "k": 5}, "valid list"),
    ({"history": ["x"], "k": 0}, "greater than or equal to 1"),
    ({"history": ["x"], "k": 21}, "k must be in [1, 20]"),
])
def test_bad_requests_are_4xx_with_a_message(served, body, message):
    client, _, catalogue = served
    body = {**body, "history": [catalogue[0] if item == "x" else item for item in body["history"] or []]} \
        if body["history"] is not None else body
    reply = client.post("/recommend", json=body)
    assert 400 <= reply.status_code < 500
    assert message in str(reply.json()["detail"])


def test_a_request_may_drop_unknown_items_and_may_not_carry_unknown_fields(served):
    client, recommender, catalogue = served
    dropped = client.post("/recommend", json={"history": catalogue[:2] + ["no-such-item"], "k": 3, "unknown": "drop"})
    assert dropped.status_code == 200
    assert [i["item_id"] for i in dropped.json()["items"]] == list(recommender.recommend(catalogue[:2], k=3)["item_id"])
    refused = client.post("/recommend", json={"history": ["no-such-item"], "k": 3})
    assert refused.status_code == 422 and '"unknown": "drop"' in refused.json()["detail"]
    misspelt = client.post("/recommend", json={"history": catalogue[:2], "k": 3, "exclude-seen": False})
    assert misspelt.status_code == 422 and "exclude-seen" in str(misspelt.json()["detail"])
