"""The dead-letter pages: the list (thumbnails, filters, cursor paging), one letter (history,
image, payload, raw bytes), and the replay and discard buttons (CSRF-checked form posts)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ...broker import (
    HELD_STATES,
    KINDS,
    REASONS,
    FilterError,
    LetterGone,
    ReplayRefused,
    select_letters,
)
from ..auth import check_csrf
from ..errors import ApiError
from ..letters import (
    RunRef,
    actor,
    as_api_error,
    check_letter_id,
    current_run,
    letter_filter,
    letter_out,
)
from ..state import Gateway, gateway
from .render import can_act, query, render, safe_path, to_login, viewer

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/dead-letters")
def letters_page(request: Request, reason: str = "", kind: str = "",
                 state: str | None = None, session: str = "", tool: str = "", since: str = "",
                 cursor: str = "", notice: str = "",
                 gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    state = "quarantined" if state is None else state  # what is still to be dealt with
    filters = {"reason": reason, "kind": kind, "state": state, "session": session,
               "tool": tool, "since": since}
    error = None
    letters, nxt = [], None
    try:
        where = letter_filter(gw, **filters)
        page = select_letters(gw.client.dead_letters, where, PAGE, cursor or None)
        now = gw.client.server_time_ms() / 1000
        letters, nxt = [letter_out(gw, x, now) for x in page.letters], page.cursor
    except FilterError as exc:
        error = as_api_error(exc).message
    except ApiError as exc:
        error = exc.message
    here = "/dead-letters?" + query(**filters, cursor=cursor)
    return render(request, gw, "letters.html", status=422 if error else 200, token=token,
                  letters=letters, filters=filters, error=error, notice=notice,
                  next_url="/dead-letters?" + query(**filters, cursor=nxt) if nxt else None,
                  first_url="/dead-letters?" + query(**filters) if cursor else None,
                  back=here, reasons=REASONS, kinds=KINDS, states=HELD_STATES)


@router.get("/dead-letters/{letter_id}")
def letter_page(letter_id: str, request: Request, notice: str = "",
                gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    token = viewer(request, gw)
    if token is None:
        return to_login(request)
    letter = gw.client.dead_letters.get(check_letter_id(letter_id))
    now = gw.client.server_time_ms() / 1000
    current = current_run(gw, letter.session_key) if letter.session_key else None
    return render(request, gw, "letter.html", token=token, letter=letter_out(gw, letter, now),
                  raw=letter.raw, current_run=current, notice=notice,
                  back=f"/dead-letters/{letter_id}")


def _acting(request: Request, gw: Gateway, csrf: str) -> str:
    token = viewer(request, gw)
    if token is None:
        raise ApiError(401, "unauthorized", "log in first")
    if not can_act(token):
        raise ApiError(403, "forbidden", f"token {token.name!r} is a viewer: only operators "
                                         "replay or discard")
    check_csrf(request, gw, csrf)
    return actor(token)


def _back(back: str, notice: str) -> RedirectResponse:
    target = safe_path(back)
    return RedirectResponse(target + ("&" if "?" in target else "?") + query(notice=notice),
                            status_code=303)


@router.post("/dead-letters/{letter_id}/replay")
def replay_button(letter_id: str, request: Request, csrf: str = Form(""),
                  back: str = Form("/dead-letters"), force: str = Form(""),
                  gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    by = _acting(request, gw, csrf)
    letters = gw.client.dead_letters
    letter = letters.get(check_letter_id(letter_id))
    run_id = current_run(gw, letter.session_key) if letter.session_key else None
    if letter.kind == "error" and not force:
        return _back(back, f"{letter_id} is kind=error (no result): not replayed; use the "
                           "letter page's force button to hand it over anyway")
    if run_id is None or letter.session_key is None:
        return _back(back, f"{letter_id} not replayed: its session has no current run")
    try:
        done = letters.replay(letter_id, RunRef(letter.session_key, run_id), by=by,
                              force=bool(force))
    except ReplayRefused as exc:
        return _back(back, f"{letter_id} not replayed: {exc.reason}"
                           + (f" ({exc.detail})" if exc.detail else ""))
    return _back(back, f"replayed {letter_id} into run {done.run_id[:12]} as inbox entry "
                       f"{done.seq}")


@router.post("/dead-letters/{letter_id}/discard")
def discard_button(letter_id: str, request: Request, csrf: str = Form(""),
                   back: str = Form("/dead-letters"),
                   gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    by = _acting(request, gw, csrf)
    try:
        gw.client.dead_letters.discard(check_letter_id(letter_id), by=by)
    except LetterGone as exc:
        return _back(back, str(exc))
    return _back(back, f"discarded {letter_id}")
