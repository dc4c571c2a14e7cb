"""``/v1/redrives``: replay every letter a filter selects, rate-limited, with progress and
cancel; ``/v1/stats``: the dead letters in figures.

A redrive runs in a thread of the process that took the POST; its progress and its cancel
flag are in Redis, so any process behind the same address answers GET and cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...broker import RedriveNotFound, RedriveProgress, Redrives
from ..auth import check_csrf, operator, reader
from ..console_models import RedriveBody, RedriveOut, StatsOut
from ..errors import ApiError, error_body
from ..redrives import redrive_out, start
from ..state import Gateway, gateway
from ..tokens import Token

router = APIRouter(tags=["redrives"])


@router.post("/v1/redrives", response_model=RedriveOut, status_code=202,
             responses={200: {"model": RedriveOut, "description": "a dry run's count"}})
def create_redrive(body: RedriveBody, request: Request,
                   gw: Gateway = Depends(gateway),  # noqa: B008
                   token: Token = Depends(operator)) -> JSONResponse:  # noqa: B008
    check_csrf(request, gw, request.headers.get("x-csrf-token"))
    progress = start(gw, body, token)
    return JSONResponse(redrive_out(progress).model_dump(mode="json"),
                        status_code=200 if progress.dry_run else 202,
                        headers={"Location": f"/v1/redrives/{progress.id}"})


def _get(redrives: Redrives, redrive_id: str) -> RedriveProgress:
    try:
        return redrives.get(redrive_id)
    except RedriveNotFound:
        raise ApiError(404, "not_found", f"no redrive {redrive_id[:64]!r} (finished ones are "
                       "kept a day)") from None


@router.get("/v1/redrives/{redrive_id}", response_model=RedriveOut)
def get_redrive(redrive_id: str, gw: Gateway = Depends(gateway),  # noqa: B008
                _: Token = Depends(reader)) -> RedriveOut:  # noqa: B008
    return redrive_out(_get(Redrives(gw.client.dead_letters), redrive_id))


@router.post("/v1/redrives/{redrive_id}/cancel", response_model=RedriveOut,
             responses={409: {"description": "the redrive had already finished"}})
def cancel_redrive(redrive_id: str, request: Request,
                   gw: Gateway = Depends(gateway),  # noqa: B008
                   _: Token = Depends(operator)) -> RedriveOut | JSONResponse:  # noqa: B008
    check_csrf(request, gw, request.headers.get("x-csrf-token"))
    redrives = Redrives(gw.client.dead_letters)
    progress = _get(redrives, redrive_id)
    if progress.finished:
        body = error_body("finished", f"redrive {redrive_id} is already {progress.state}")
        body["error"]["state"] = progress.state
        return JSONResponse(body, status_code=409)
    redrives.cancel(redrive_id)
    return redrive_out(redrives.get(redrive_id))


@router.get("/v1/stats", response_model=StatsOut, tags=["dead letters"])
def stats(gw: Gateway = Depends(gateway), _: Token = Depends(reader)) -> StatsOut:  # noqa: B008
    s = gw.client.dead_letters.stats()
    return StatsOut(held=s.held, by_reason=s.by_reason, by_tool=s.by_tool,
                    by_state=s.by_state, oldest_age_seconds=s.oldest_age,
                    counters=s.counters)
