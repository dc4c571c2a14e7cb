"""What every console page shares: the templates, who is looking (cookie login), the CSRF
token of their cookie, and a redirect to the login form for a visitor without one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ...workers import age
from ..auth import COOKIE, COOKIE_TTL, LOCAL, csrf_token, identify, issue_cookie
from ..errors import ApiError
from ..state import Gateway
from ..tokens import Role, Token

HERE = Path(__file__).parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True,
                        lstrip_blocks=True)


def at(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                   time.gmtime(epoch))


TEMPLATES.filters["age"] = age
TEMPLATES.filters["at"] = at
TEMPLATES.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True,
                                                       default=str)
TEMPLATES.filters["short"] = lambda value, n=12: "-" if not value else str(value)[:n]


def viewer(request: Request, gw: Gateway) -> Token | None:
    """The console user, from the cookie (or a bearer token); None: show the login form."""
    try:
        token = identify(request, gw)
    except ApiError:
        return None
    return token if token is LOCAL or token.can_read_console() else None


def can_act(token: Token) -> bool:
    return token is LOCAL or token.role is Role.OPERATOR


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def safe_path(target: str | None, default: str = "/dead-letters") -> str:
    """Only a path of this site: anything else would make the console an open redirect
    (browsers read ``/\\host`` as ``//host``)."""
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return default


def render(request: Request, gw: Gateway, name: str, status: int = 200,
           token: Token | None = None, **context: Any) -> Response:
    cookie = request.cookies.get(COOKIE)
    fresh = None
    if cookie is None and gw.tokens is None:  # --insecure-local: forms still need a CSRF token
        cookie = fresh = issue_cookie(gw, LOCAL)
    html = TEMPLATES.get_template(name).render(
        me=token, can_act=token is not None and can_act(token),
        csrf=csrf_token(gw, cookie) if cookie else "", path=request.url.path,
        namespace=gw.client.keys.namespace, **context)
    page = HTMLResponse(html, status_code=status)
    if fresh is not None:
        page.set_cookie(COOKIE, fresh, max_age=COOKIE_TTL, httponly=True, samesite="lax")
    return page


def query(**params: Any) -> str:
    """A query string of the non-empty ``params``."""
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})
