"""The runs page: live, parked and recent runs (found by a SCAN over run records, as
``celery runs ls`` does), each with its inbox."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ...broker import Inbox
from ...ownership import RunState, RunStatus
from ..letters import plain
from ..state import Gateway, gateway
from .render import render, to_login, viewer

router = APIRouter(include_in_schema=False)
MAX_RUNS = 500       # run records read per page view: an operator's page, not a hot path
RECENT = 30          # ended runs shown
INBOX_ENTRIES = 20   # newest entries shown per run


def inbox_of(gw: Gateway, status: RunStatus) -> list[dict[str, Any]]:
    inbox = Inbox(gw.client.redis, gw.client.keys.inbox(status.session_key, status.run_id))
    entries = inbox.entries()[-INBOX_ENTRIES:]
    return [{"seq": e.seq, "role": e.role, "kind": e.kind, "callback_id": e.callback_id,
             "tool": e.provenance.get("source_tool"), "payload": plain(e.payload),
             "images": len(e.artifacts),
             "dead_letter_id": e.provenance.get("dead_letter_id")} for e in entries]


@router.get("/runs")
def runs_page(request: Request, gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    registry = gw.client.registry
    statuses = []
    for n, (sk, run_id) in enumerate(registry.runs()):
        if n >= MAX_RUNS:
            break
        statuses.append(registry.status(sk, run_id))
    statuses.sort(key=lambda s: s.created_at or 0, reverse=True)
    live = [s for s in statuses if s.state is RunState.LIVE]
    parked = [s for s in statuses if s.state is RunState.PARKED]
    recent = [s for s in statuses if s.state not in (RunState.LIVE, RunState.PARKED)][:RECENT]
    now = gw.client.server_time_ms() / 1000
    groups = [(title, [(s, inbox_of(gw, s)) for s in group])
              for title, group in (("Live", live), ("Parked", parked), ("Recent", recent))]
    return render(request, gw, "runs.html", token=token, groups=groups, now=now,
                  capped=len(statuses) >= MAX_RUNS)
