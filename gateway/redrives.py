"""Redrives as the console starts and shows them: a request body checked into the engine's
request (a 422 naming the field), started here or counted at once, and its progress."""

from __future__ import annotations

from ..broker import FilterError, RedriveProgress, RedriveRequest, Redrives
from .console_models import RedriveBody, RedriveOut
from .letters import as_api_error, letter_filter
from .state import Gateway
from .tokens import Token


def redrive_out(progress: RedriveProgress) -> RedriveOut:
    return RedriveOut(id=progress.id, state=progress.state, dry_run=progress.dry_run,
                      total=progress.total, done=progress.done, replayed=progress.replayed,
                      refused=progress.refused, skipped=progress.skipped,
                      refusals=progress.refusals, request=progress.request, by=progress.by,
                      started_at=progress.started_at, updated_at=progress.updated_at,
                      error=progress.error, url=f"/v1/redrives/{progress.id}")


def redrive_request(gw: Gateway, body: RedriveBody) -> RedriveRequest:
    """The engine's request of a body; 422 naming the field it refuses."""
    where = letter_filter(gw, body.reason, body.kind, body.state, body.session, body.tool,
                          body.since)
    try:
        return RedriveRequest(where=where, to_current=body.to_current,
                              run_id=body.run_id or None, dry_run=body.dry_run,
                              rate=body.rate, force=body.force)
    except FilterError as exc:
        raise as_api_error(exc) from None


def start(gw: Gateway, body: RedriveBody, token: Token) -> RedriveProgress:
    """A dry run is counted here and now; a real one starts in the background."""
    request = redrive_request(gw, body)
    redrives = Redrives(gw.client.dead_letters)
    by = f"{token.name} (console)"
    return redrives.run(request, by) if request.dry_run else redrives.start(request, by)
