"""The runtime API's request and response bodies: what /openapi.json publishes and a
generated client types against. Limits that depend on the deployment are checked in the
routes (they name the field and the limit); the ones here are fixed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RunStateName = Literal["live", "parked", "expired", "superseded", "released", "unknown"]
MAX_TOOL_CHARS = 128
MAX_CALLBACK_ID_CHARS = 128
MAX_SESSION_KEY_CHARS = 512


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not ignored


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: e.g. lease_lost, unknown_tool")
    message: str
    field: str | None = Field(default=None, description="the request field the error is about")
    reason: str | None = Field(default=None, description="lease_lost only: superseded, expired, "
                                                 "released or unknown")


class Error(BaseModel):
    """Every refusal: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route."""
    text = {401: "no or unknown token", 403: "wrong role, or a session key outside the "
            "token's prefixes", 404: "no such run or artifact", 409: "the lease is lost "
            "(error.reason) or the request conflicts", 413: "request body too large",
            422: "bad JSON or a bad field (error.field names it)",
            503: "Redis is unavailable"}
    return {s: {"model": Error, "description": text[s]} for s in statuses}


class StartRun(_Body):
    session_key: str = Field(min_length=1, max_length=MAX_SESSION_KEY_CHARS,
                             description="must fall under one of the token's prefixes")
    prompt: Any = Field(description="entry 1 of the inbox (any JSON, 256 KiB encoded at most)")
    ttl: float = Field(gt=0, description="seconds of lease; at most the deployment's max_ttl "
                                          "(3600 s by default)")
    policy: Literal["supersede", "exclusive"] = "supersede"


class RunStarted(BaseModel):
    run: str = Field(description="the opaque run ref every /v1/runs/{run} route takes")
    run_id: str
    fence: int
    session_key: str
    state: RunStateName
    expires_at: float = Field(description="Redis server time, seconds since the epoch")
    previous_run_id: str | None = Field(default=None, description="the run this one superseded")


class RunStatus(BaseModel):
    run: str
    run_id: str
    session_key: str
    state: RunStateName
    fence: int
    expires_at: float | None = Field(default=None, description="lease end (server time, s); for a "
                                                       "parked run its park deadline")
    parked_until: float | None = None
    ttl: float | None = None
    outcome: str | None = None
    ended_at: float | None = None
    superseded_by: str | None = Field(default=None, description="run id of the superseding run")
    server_time: float = Field(description="Redis server time of this reading")
    pending: dict[str, str] = Field(description="callbacks not yet delivered or quarantined:"
                                                " callback id -> tool")


class RenewRun(_Body):
    ttl: float | None = Field(default=None, gt=0, description="seconds; default: the run's own ttl")


class ParkRun(_Body):
    until: float = Field(gt=0, description="seconds to stay alive without renewals; at most "
                                           "the deployment's max_park (86400 s by default)")


class RunLease(BaseModel):
    run: str
    run_id: str
    session_key: str
    fence: int
    state: RunStateName
    expires_at: float
    ttl: float


class ReleaseRun(_Body):
    outcome: Literal["completed", "failed", "cancelled"] = "completed"
    cancel_pending: bool = Field(default=False,
                                 description="also revoke queued tasks still pending")


class RunReleased(BaseModel):
    run: str
    state: RunStateName
    outcome: str | None
    pending: dict[str, str] = Field(description="callbacks left pending: they will end in "
                                                "the dead letters, never lost")
    cancelled: bool


class SubmitTask(_Body):
    tool: str = Field(min_length=1, max_length=MAX_TOOL_CHARS)
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="the tool's keyword arguments (64 KiB as JSON)")
    deadline: float = Field(default=600.0, gt=0,
                            description="seconds; at most LEASEGATE_MAX_DEADLINE")
    callback_id: str | None = Field(default=None, min_length=1, max_length=MAX_CALLBACK_ID_CHARS,
                                    description="your own id (an LLM tool-call id), unique "
                                                "in the run; default: a fresh one")


class TaskAccepted(BaseModel):
    callback_id: str


class ArtifactLink(BaseModel):
    digest: str
    size: int
    media_type: str
    url: str = Field(description="GET it with the same token: /v1/artifacts/{digest}?run=...")


class InboxEntry(BaseModel):
    seq: int = Field(description="1 is the prompt; the SSE event id")
    role: Literal["user", "tool"]
    kind: str = Field(description="prompt | result | error | recovered")
    callback_id: str | None
    payload: Any
    artifacts: list[ArtifactLink]
    provenance: dict[str, Any] = Field(default_factory=dict,
                                       description="source_tool, task_id, fence, "
                                                   "delivered_at (server time, s), ...")


class InboxPage(BaseModel):
    entries: list[InboxEntry]
    next_after: int = Field(description="pass as ?after= to read on")
