"""The bulk redrive pages: a form (filters, rate, force) whose Count button is a dry run and
whose Start button starts a redrive, and a progress page with a bar and a cancel button."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from ...broker import KINDS, REASONS, RedriveNotFound, Redrives
from ..auth import check_csrf
from ..console_models import RedriveBody
from ..errors import ApiError
from ..redrives import redrive_out, start
from ..state import Gateway, gateway
from .render import can_act, render, to_login, viewer

router = APIRouter(include_in_schema=False)


@router.get("/redrive")
def redrive_form(request: Request, session: str = "", reason: str = "", kind: str = "",
                 tool: str = "", since: str = "",
                 gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    form = {"session": session, "reason": reason, "kind": kind, "tool": tool, "since": since,
            "rate": "", "force": False}
    return render(request, gw, "redrive.html", token=token, form=form, count=None,
                  error=None, reasons=REASONS, kinds=KINDS)


@router.post("/redrive")
def redrive_submit(request: Request, csrf: str = Form(""), action: str = Form("count"),
                   session: str = Form(""), reason: str = Form(""), kind: str = Form(""),
                   tool: str = Form(""), since: str = Form(""), rate: str = Form(""),
                   force: str = Form(""),
                   gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    if not can_act(token):
        raise ApiError(403, "forbidden", f"token {token.name!r} is a viewer: only operators "
                                         "redrive")
    check_csrf(request, gw, csrf)
    form = {"session": session, "reason": reason, "kind": kind, "tool": tool, "since": since,
            "rate": rate, "force": bool(force)}
    try:
        body = RedriveBody(session=session or None, reason=reason or None, kind=kind or None,
                           tool=tool or None, since=since or None, state="quarantined",
                           rate=float(rate) if rate.strip() else None, force=bool(force),
                           to_current=True, dry_run=action != "start")
        progress = start(gw, body, token)
    except (ValueError, ValidationError):  # the one field a form sends that is no string
        return render(request, gw, "redrive.html", status=422, token=token, form=form,
                      count=None, error=f"rate: {rate[:20]!r} is not a number of letters per "
                                        "second", reasons=REASONS, kinds=KINDS)
    except ApiError as exc:
        return render(request, gw, "redrive.html", status=exc.status, token=token, form=form,
                      count=None, error=exc.message, reasons=REASONS, kinds=KINDS)
    if progress.dry_run:
        return render(request, gw, "redrive.html", token=token, form=form,
                      count=redrive_out(progress), error=None, reasons=REASONS, kinds=KINDS)
    return RedirectResponse(f"/redrives/{progress.id}", status_code=303)


@router.get("/redrives/{redrive_id}")
def redrive_page(redrive_id: str, request: Request,
                 gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    try:
        progress = Redrives(gw.client.dead_letters).get(redrive_id)
    except RedriveNotFound:
        raise ApiError(404, "not_found", f"no redrive {redrive_id[:64]!r}") from None
    return render(request, gw, "redrive_progress.html", token=token,
                  redrive=redrive_out(progress))
