"""An HTTP endpoint over one catalogue's recommender (the optional ``serve`` extra: ``pip install -e ".[serve]"``).

    from prerec_pyro import PretrainedRun
    from prerec_pyro.serve import create_app

    app = create_app(PretrainedRun.load(run_dir).on_domain("items.csv", recent_interactions="recent.csv"))
    # uvicorn.run(app)  -- scripts/serve.py does this

``POST /recommend`` takes ``{"history": ["i1", "i2"], "k": 10, "exclude_seen": true, "unknown": "error"}`` (a field
the API does not know is refused; ``"unknown": "drop"`` drops history items outside the catalogue) and answers
``{"items": [{"item_id": ..., "score": ...}, ...]}`` (the zero-shot scores of ``DomainRecommender.recommend``).
``GET /health`` answers ``{"status": "ok", "n_items": J}``. Bad input (an empty history, an item id outside the
catalogue, k outside [1, min(max_k, J)]) is a 4xx whose ``detail`` says what was wrong, never a 500.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from prerec_pyro.api import DomainRecommender


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not a silent default

    history: list[str] = Field(min_length=1, description="item ids in time order, the latest last")
    k: int = Field(10, ge=1, description="how many items to return")
    exclude_seen: bool = Field(True, description="leave out the history's own items")
    unknown: Literal["error", "drop"] = Field("error", description="history items outside the catalogue: an error, "
                                                                   "or dropped")


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendResponse(BaseModel):
    items: list[ScoredItem]


def create_app(recommender: DomainRecommender, max_k: int = 100) -> FastAPI:
    """A FastAPI app answering ``/recommend`` and ``/health`` for ``recommender``'s catalogue."""
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k}")
    app = FastAPI(title="prerec-pyro", description="zero-shot PreRec recommendations (Eq. 8)")
    n_items = len(recommender.item_ids)
    limit = min(max_k, n_items)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "n_items": n_items}

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(request: RecommendRequest) -> RecommendResponse:
        if request.k > limit:
            raise HTTPException(status_code=422, detail=f"k must be in [1, {limit}], got {request.k}")
        try:
            top = recommender.recommend(request.history, k=request.k, exclude_seen=request.exclude_seen,
                                        unknown=request.unknown)
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        items = [ScoredItem(item_id=str(row.item_id), score=float(row.score)) for row in top.itertuples()]
        return RecommendResponse(items=items)

    return app
