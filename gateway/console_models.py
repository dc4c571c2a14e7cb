"""The console API's bodies and answers, typed: the OpenAPI schema is made from them. A letter
has the fields ``celery dlq show --json`` prints, plus the URLs of its images."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ArtifactOut(BaseModel):
    digest: str
    size: int
    media_type: str
    path: str | None = Field(description="where the store keeps it on the server; null when "
                                         "it is not in the store")
    url: str | None = Field(description="the bytes through this API (images only)")
    thumbnail_url: str | None


class LetterOut(BaseModel):
    id: str
    reason: str
    state: str
    detail: str
    session_key: str | None
    run_id: str | None
    fence: int | None
    owner_run_id: str | None
    owner_fence: int | None
    tool: str | None
    task_id: str | None
    callback_id: str | None
    kind: str | None
    run_state: str | None
    submitted_at: float | None
    completed_at: float | None
    quarantined_at: float | None
    deadline_at: float | None
    age_seconds: float | None
    payload: Any
    payload_truncated: int
    artifacts: list[ArtifactOut]
    raw_base64: str | None
    raw_size: int | None
    claimed_session_key: str | None
    claimed_tool: str | None
    redelivered_to: str | None
    history: list[dict[str, Any]]
    thumbnail_url: str | None = Field(description="a small WebP of the first image; null "
                                                  "without one")


class LetterPage(BaseModel):
    letters: list[LetterOut]
    cursor: str | None = Field(description="pass as ?cursor= for the next page; null: no more")


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str | None = Field(None, description="a live or parked run of the letter's session")
    to_current: bool = Field(False, description="the current run of the letter's session")
    force: bool = Field(False, description="needed to replay a kind=error letter")


class ReplayOut(BaseModel):
    id: str
    session_key: str
    run_id: str
    entry_id: str
    seq: int
    resumed: bool = Field(description="the run was parked: a resume signal was left for it")


class DiscardOut(BaseModel):
    id: str
    previous_state: str
    state: str


class RedriveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None
    kind: str | None = None
    state: str | None = None
    session: str | None = None
    tool: str | None = None
    since: str | None = Field(None, description="letters younger than this: 90s, 30m, 2h, 7d")
    to_current: bool = False
    run_id: str | None = None
    dry_run: bool = Field(False, description="count what would be replayed, change nothing "
                                             "(answered at once)")
    rate: float | None = Field(None, description="letters per second (none: as fast as Redis "
                                                 "goes)")
    force: bool = Field(False, description="replay kind=error letters too")


class RedriveOut(BaseModel):
    id: str
    state: str = Field(description="running | done | cancelled | failed | abandoned (its "
                                   "process stopped)")
    dry_run: bool
    total: int
    done: int
    replayed: int
    refused: int
    skipped: int = Field(description="kind=error letters left alone (no force)")
    refusals: dict[str, int]
    request: dict[str, Any]
    by: str
    started_at: float | None
    updated_at: float | None
    error: str
    url: str


class StatsOut(BaseModel):
    held: int
    by_reason: dict[str, int]
    by_tool: dict[str, int]
    by_state: dict[str, int]
    oldest_age_seconds: float | None
    counters: dict[str, int]
