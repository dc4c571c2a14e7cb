"""Who is calling: a bearer token (``Authorization: Bearer <token>``) or the console's signed
cookie; dependencies that demand a role, and a runtime token's session-key prefixes.

No credentials: 401. A credential of the wrong role, or a session key outside the token's
prefixes: 403. Console form posts carry a CSRF token bound to the cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable

from fastapi import Depends, Request, Response

from .errors import ApiError
from .state import Gateway, gateway
from .tokens import Role, Token

COOKIE = "leasegate_console"
COOKIE_TTL = 12 * 3600
LOCAL = Token("local", Role.OPERATOR, "0" * 64)  # --insecure-local: no book, one operator


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def issue_cookie(gw: Gateway, token: Token, now: float | None = None) -> str:
    """``<base64 name>.<expiry>.<mac>``: the token's name, never the token itself."""
    expires = int((now or time.time()) + COOKIE_TTL)
    body = f"{base64.urlsafe_b64encode(token.name.encode()).decode()}.{expires}"
    return f"{body}.{_sign(gw.cookie_key, body)}"


def read_cookie(gw: Gateway, value: str) -> Token | None:
    try:
        name64, expires, mac = value.split(".")
        body = f"{name64}.{expires}"
        if not hmac.compare_digest(mac, _sign(gw.cookie_key, body)) or \
                int(expires) < time.time():
            return None
        name = base64.urlsafe_b64decode(name64.encode()).decode()
    except ValueError:
        return None
    if gw.tokens is None:
        return LOCAL if name == LOCAL.name else None
    return gw.tokens.by_name(name)  # a token removed from the book loses its cookies too


def csrf_token(gw: Gateway, cookie: str) -> str:
    return _sign(gw.cookie_key, f"csrf:{cookie}")


def check_csrf(request: Request, gw: Gateway, submitted: str | None) -> None:
    """A form post must echo the CSRF token of the cookie it came with."""
    cookie = request.cookies.get(COOKIE)
    if request.headers.get("authorization"):
        return  # a bearer token is not sent by a browser on its own: no CSRF to fear
    if not cookie or not submitted or not hmac.compare_digest(submitted, csrf_token(gw, cookie)):
        raise ApiError(403, "csrf", "the form's CSRF token is missing or stale: reload the page")


def caller(request: Request, response: Response,
           gw: Gateway = Depends(gateway)) -> Token:  # noqa: B008
    """The caller's token, within its rate limit; 401 without one, 429 over the limit."""
    token = identify(request, gw)
    if token is not LOCAL:
        admit(gw, token, response)
    return token


def admit(gw: Gateway, token: Token, response: Response) -> None:
    """Draw from ``token``'s bucket (shared by every serve process); 429 when it is empty."""
    limit = gw.limiter.limit
    if not limit.enabled:
        return
    verdict = gw.limiter.take(token.name)
    headers = {"X-RateLimit-Limit": f"{limit.rate:g}",
               "X-RateLimit-Remaining": str(verdict.remaining)}
    if not verdict.admitted:
        retry = max(1, math.ceil(verdict.retry_after))
        raise ApiError(429, "rate_limited", f"token {token.name!r} is over its rate limit of "
                       f"{limit.rate:g} requests per second (burst {limit.burst}): retry in "
                       f"{retry} s", headers={**headers, "Retry-After": str(retry)})
    response.headers.update(headers)


def charge(request: Request) -> None:
    """For a request refused before its dependencies ran (a body that is not JSON): 401
    without a credential, 429 over the token's limit, so such a flood draws from the bucket."""
    gw = gateway(request)
    token = identify(request, gw)
    if token is not LOCAL:
        admit(gw, token, Response())


def identify(request: Request, gw: Gateway) -> Token:
    """The caller's token, not drawing from its bucket (console pages); 401 without one."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, bearer = header.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            raise ApiError(401, "unauthorized", "Authorization must be 'Bearer <token>'")
        if gw.tokens is None:
            return LOCAL
        token = gw.tokens.find(bearer.strip())
        if token is None:
            raise ApiError(401, "unauthorized", "unknown token")
        return token
    cookie = request.cookies.get(COOKIE)
    if cookie:
        token = read_cookie(gw, cookie)
        if token is not None:
            return token
    if gw.tokens is None:
        return LOCAL
    raise ApiError(401, "unauthorized", "no credentials: send 'Authorization: Bearer <token>'")


def require(*roles: Role) -> Callable[..., Token]:
    """A dependency admitting only ``roles``."""

    def admitted(token: Token = Depends(caller)) -> Token:  # noqa: B008
        if token.role not in roles and token is not LOCAL:  # local mode: every role
            raise ApiError(403, "forbidden", f"token {token.name!r} has role "
                           f"{token.role.value}; this needs {' or '.join(r.value for r in roles)}")
        return token

    return admitted


def check_session(token: Token, session_key: str, field: str = "session_key") -> None:
    """403 unless a runtime token's prefixes cover ``session_key`` (local mode: all)."""
    if token is LOCAL or token.may_use(session_key):
        return
    raise ApiError(403, "session_forbidden", f"token {token.name!r} may not use session key "
                   f"{session_key!r} (its prefixes: {', '.join(token.sessions) or 'none'})",
                   field)


operator = require(Role.OPERATOR)
reader = require(Role.OPERATOR, Role.VIEWER)
runtime = require(Role.RUNTIME)
