"""``/login`` and ``/logout``: a token typed once becomes a signed cookie naming it (never the
token itself) for 12 hours; the form carries a login-CSRF token of its own."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..auth import COOKIE, COOKIE_TTL, LOCAL, check_csrf, issue_cookie
from ..state import Gateway, gateway
from .render import render, safe_path, viewer

router = APIRouter(include_in_schema=False)
LOGIN_NONCE = "leasegate_login"


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/dead-letters", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str | None = None,
               gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    nonce = secrets.token_urlsafe(24)
    page = render(request, gw, "login.html", token=viewer(request, gw), login_csrf=nonce,
                  next=safe_path(next), local=gw.tokens is None, error=None)
    page.set_cookie(LOGIN_NONCE, nonce, max_age=600, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https")
    return page


@router.post("/login")
def login(request: Request, token: str = Form(""), csrf: str = Form(""),
          next: str = Form("/dead-letters"),
          gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    nonce = request.cookies.get(LOGIN_NONCE, "")

    def again(error: str, status: int) -> Response:
        return render(request, gw, "login.html", status=status, token=None, login_csrf=nonce,
                      next=safe_path(next), local=gw.tokens is None, error=error)

    if not nonce or not hmac.compare_digest(nonce, csrf):
        return again("The form expired: try again.", 403)
    if gw.tokens is None:
        found = LOCAL
    else:
        match = gw.tokens.find(token.strip()) if token.strip() else None
        if match is None:
            return again("Unknown token.", 401)
        if not match.can_read_console():
            return again(f"Token {match.name!r} is a {match.role.value} token: the console "
                         "takes operator and viewer tokens.", 403)
        found = match
    done = RedirectResponse(safe_path(next), status_code=303)
    done.set_cookie(COOKIE, issue_cookie(gw, found), max_age=COOKIE_TTL, httponly=True,
                    samesite="lax", secure=request.url.scheme == "https")
    done.delete_cookie(LOGIN_NONCE)
    return done


@router.post("/logout")
def logout(request: Request, csrf: str = Form(""),
           gw: Gateway = Depends(gateway)) -> Response:  # noqa: B008
    check_csrf(request, gw, csrf)
    done = RedirectResponse("/login", status_code=303)
    done.delete_cookie(COOKIE)
    return done
