"""The public API: load a pre-trained run, point it at a catalogue it has never seen, and recommend.

    from prerec_pyro import PretrainedRun

    run = PretrainedRun.load("runs/retail-countries/prerec-delta-seed0-20261201-120000")
    shop = run.on_domain("items.csv", recent_interactions="recent.csv")   # generic-format tables or DataFrames
    shop.recommend(["85123A", "71053"], k=10)           # one history: a DataFrame of rank, item_id, score
    shop.recommend({"u1": ["85123A"], "u2": ["22423", "71053"]}, k=5)     # many: one row per user and rank
    shop.score([["85123A", "71053"]])                   # [1, J] scores over the whole catalogue

Scores are zero-shot scores of the paper's Eq. 8 (by default weighed with its f_seq = 0 version by each user's history,
``inference/evidence.py``), through the same ``pyro.poutine.do`` intervention as the
evaluation harness (``inference.intervene.InterventionScorer``): D = 0, every offset 0 (a model with shared item
offsets keeps its learned ones for items the sources listed), and the popularity factors F_j of the catalogue from
the recent interactions of the interval before ``now`` (none given: F = 0). The recommended item for a history is
the next item after its last one.

``PretrainedRun`` (``inference/pretrained.py``) is the one object that puts a run onto a target: the evaluation
harness, fine-tuning and the study use it too (``model_on``, ``target_scorer``), so the API's scores are the
harness's. ``DomainRecommender`` is in ``inference/recommender.py``.
"""

from prerec_pyro.inference.pretrained import PretrainedRun, check_device
from prerec_pyro.inference.recommender import UNKNOWN, DomainRecommender

__all__ = ["UNKNOWN", "DomainRecommender", "PretrainedRun", "check_device"]
