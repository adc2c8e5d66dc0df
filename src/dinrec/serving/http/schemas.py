"""Request and response bodies of the HTTP API (pydantic), which also document it (OpenAPI).

Types are strict: an id is a JSON string or integer (never a float or a bool), a number is
finite, and unknown fields are rejected, so a typo is a 422 naming the field rather than a
silently ignored value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

RawId = Annotated[StrictStr, Field(min_length=1, max_length=512)] | StrictInt
Number = StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]
Scalar = StrictStr | Number
FeatureValue = Scalar | list[Scalar]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RankRequest(Strict):
    """Rank candidate items for one user, with history and profile from the store."""

    user_id: RawId = Field(description="Raw user id (as in the training log).")
    candidates: list[RawId] = Field(
        min_length=1, description="Raw item ids to score; categories come from the store."
    )
    profile: dict[str, FeatureValue] = Field(
        default_factory=dict,
        description="Profile values by feature name; they override the stored profile.",
    )
    top_k: StrictInt | None = Field(
        default=None, ge=1, description="Return only the best top_k candidates."
    )
    timestamp: Number | None = Field(
        default=None, description="The request's time in seconds, which a model's time "
        "since each behavior (<prefix>time_gap) is measured to; default: the server's clock.",
    )


class RankedItem(BaseModel):
    item_id: RawId
    score: float = Field(description="Click probability.")


class RankResponse(BaseModel):
    user_id: RawId
    model_version: str
    cold_start: bool = Field(description="The store knew nothing of this user.")
    history_length: int = Field(description="Behaviors the model used (all histories).")
    history_lengths: dict[str, int] | None = Field(
        default=None, description="Behaviors used per history, for a model with history "
        "groups ('' is history_feature_list's)."
    )
    items: list[RankedItem] = Field(description="Candidates, best first.")
    defaulted: list[str] = Field(
        description="Profile features absent from both the request and the store."
    )


class ScoreRequest(Strict):
    """Score rows that carry every feature themselves (history lists included)."""

    rows: list[dict[str, FeatureValue]] = Field(
        min_length=1,
        description="One object per row: feature name -> raw id, number, or list of ids.",
    )


class ScoreResponse(BaseModel):
    model_version: str
    scores: list[float] = Field(description="Click probability per row, in row order.")


class Event(Strict):
    """One behavior: the user acted on the item at `timestamp` (seconds)."""

    user_id: RawId
    item_id: RawId
    category: RawId | None = Field(
        default=None, description="The item's raw category; also updates the item's entry."
    )
    timestamp: Number
    behavior: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="The behavior's type (e.g. pv, cart, buy): which history "
        "group of the model it feeds (GET /v1/model lists them); absent: untyped, "
        "history_feature_list's history.",
    )
    weight: Number = Field(
        default=1.0, description="The behavior's weight (e.g. dwell time), for a model whose "
        "history has a weight_name; a finite float32; absent: 1.0.",
    )


class EventsRequest(Strict):
    events: list[Event] = Field(min_length=1)


class EventsResponse(BaseModel):
    appended: int = Field(description="Events stored and kept in their user's history.")
    trimmed: int = Field(
        description="Events taken but dropped at once: older than their user's latest "
        "history_keep behaviors (the model would never read them)."
    )
    users: int


class ReloadRequest(Strict):
    bundle: str | None = Field(
        default=None, min_length=1, max_length=1024,
        description="Bundle directory to load, relative to the server's bundle root; "
        "default: the one being served.",
    )


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str
    backend: str
    bundle: str = Field(description="The bundle now served, relative to the bundle root.")
    seconds: float


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, naming the field.")
    field: str | None = None
    detail: list[dict[str, Any]] | None = None
