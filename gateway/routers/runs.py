"""``/v1/runs``: start a run, read its status, renew, park and release it, for runtimes in any
language. A lost lease is a 409 naming the reason; the gateway acts only for the incarnation
the run ref names."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from ...broker import pack_body
from ...ownership import LeaseHeld, LeaseLost, RunState, check_seconds, check_session_key
from ...ownership import RunStatus as RegistryStatus
from ..auth import check_session, runtime
from ..errors import ApiError
from ..runref import RunRef
from ..runs import CallerRun, caller_run
from ..runtime_models import (
    ParkRun,
    ReleaseRun,
    RenewRun,
    RunLease,
    RunReleased,
    RunStarted,
    RunStatus,
    StartRun,
    errors,
)
from ..state import Gateway, gateway
from ..tokens import Token

router = APIRouter(tags=["runs"])


def checked(field: str, check: Any, *args: Any) -> Any:
    """``check(*args)``, its TypeError/ValueError as a 422 naming ``field``."""
    try:
        return check(*args)
    except (TypeError, ValueError) as exc:
        raise ApiError(422, "invalid", str(exc), field) from None


@router.post("/v1/runs", status_code=201, response_model=RunStarted, operation_id="startRun",
             responses=errors(401, 403, 409, 413, 422, 503))
def start_run(body: StartRun, token: Token = Depends(runtime),  # noqa: B008
              gw: Gateway = Depends(gateway)) -> RunStarted:  # noqa: B008
    """Acquire a lease for a session key and write the prompt as inbox entry 1, atomically.
    409 ``lease_held`` when ``policy`` is exclusive and a live run holds the key."""
    settings = gw.client.settings
    checked("session_key", check_session_key, body.session_key)
    check_session(token, body.session_key)
    checked("ttl", check_seconds, "ttl", body.ttl, settings.max_ttl)
    checked("prompt", pack_body, "prompt", body.prompt, settings.max_prompt_bytes)
    try:
        run = gw.client.start_run(body.session_key, body.prompt, body.ttl, body.policy)
    except LeaseHeld as exc:
        raise ApiError(409, "lease_held", str(exc), "session_key") from None
    lease = run.lease
    return RunStarted(run=RunRef.of(lease).encode(gw.client.secrets), run_id=lease.run_id,
                      fence=lease.fence, session_key=lease.session_key,
                      state=lease.state.value, expires_at=lease.expires_at,
                      previous_run_id=lease.previous_run_id)


def status_body(ref: str, status: RegistryStatus, pending: dict[str, str]) -> RunStatus:
    return RunStatus(
        run=ref, run_id=status.run_id, session_key=status.session_key,
        state=status.state.value, fence=status.fence or 0, expires_at=status.expires_at,
        parked_until=status.expires_at if status.state is RunState.PARKED else None,
        ttl=status.ttl, outcome=status.outcome, ended_at=status.ended_at,
        superseded_by=status.superseded_by, server_time=status.server_time or 0.0,
        pending=pending)


def current_status(target: CallerRun) -> RegistryStatus:
    """The registry's status, or 404 when the ref's incarnation is not (or no longer) there."""
    status = target.gw.client.registry.status(target.run_ref.session_key, target.run_ref.run_id)
    if status.state is RunState.UNKNOWN or status.fence != target.run_ref.fence or \
            (status.incarnation or "") != target.run_ref.incarnation:
        raise ApiError(404, "run_not_found", "no such run: it never existed here or its "
                       "retention ran out", "run")
    return status


@router.get("/v1/runs/{run}", response_model=RunStatus, operation_id="getRun",
            responses=errors(401, 403, 404, 422, 503))
def get_run(target: CallerRun = Depends(caller_run)) -> RunStatus:  # noqa: B008
    """State, fence, lease or park deadline, and the callbacks still pending."""
    status = current_status(target)
    return status_body(target.ref, status, target.run.pending())


def lease_body(ref: str, target: CallerRun) -> RunLease:
    lease = target.run.lease
    return RunLease(run=ref, run_id=lease.run_id, session_key=lease.session_key,
                    fence=lease.fence, state=lease.state.value, expires_at=lease.expires_at,
                    ttl=lease.ttl)


@router.post("/v1/runs/{run}/renew", response_model=RunLease, operation_id="renewRun",
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def renew_run(body: RenewRun | None = None,
              target: CallerRun = Depends(caller_run)) -> RunLease:  # noqa: B008
    """Heartbeat: extend the lease by ``ttl`` (default its own); a parked run is live again."""
    ttl = body.ttl if body else None
    if ttl is not None:
        checked("ttl", check_seconds, "ttl", ttl, target.gw.client.settings.max_ttl)
    target.run.renew(ttl)
    return lease_body(target.ref, target)


@router.post("/v1/runs/{run}/park", response_model=RunLease, operation_id="parkRun",
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def park_run(body: ParkRun, target: CallerRun = Depends(caller_run)) -> RunLease:  # noqa: B008
    """Stay alive without heartbeats for ``until`` seconds, waiting for callbacks (hold
    GET /v1/runs/{run}/events meanwhile)."""
    checked("until", check_seconds, "until", body.until, target.gw.client.settings.max_park)
    target.run.park(body.until)
    return lease_body(target.ref, target)


@router.post("/v1/runs/{run}/release", response_model=RunReleased, operation_id="releaseRun",
             responses=errors(401, 403, 404, 409, 413, 422, 503))
def release_run(body: ReleaseRun | None = None,
                target: CallerRun = Depends(caller_run)) -> RunReleased:  # noqa: B008
    """End the run. Releasing again answers the same; a run that already expired or was
    superseded answers 409 with that reason (its pending callbacks are quarantined)."""
    body = body or ReleaseRun()
    report = target.run.release(body.outcome, body.cancel_pending)
    state = report.status.state
    if state is RunState.UNKNOWN:
        raise ApiError(404, "run_not_found", "no such run: it never existed here or its "
                       "retention ran out", "run")
    if report.status.fence != target.run_ref.fence or \
            (report.status.incarnation or "") != target.run_ref.incarnation:
        raise LeaseLost("unknown", target.run_ref.session_key, target.run_ref.run_id)
    if state is not RunState.RELEASED:
        raise LeaseLost(state.value, target.run_ref.session_key, target.run_ref.run_id)
    return RunReleased(run=target.ref, state=state.value, outcome=report.status.outcome,
                       pending=report.pending, cancelled=report.cancelled)
