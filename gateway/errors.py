"""Every refusal is JSON: ``{"error": {"code", "message", "field"?}}``, never an HTML page or a
traceback; request bodies are bounded before they are read."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..broker import LetterNotFound, ReplayRefused
from ..ownership import LeaseLost, RegistryUnavailable


class ApiError(Exception):
    """A refusal with its HTTP status, a stable code, and the field it is about."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "args", "prompt") -> "args.prompt"; ("query", "limit") -> "limit"
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else \
        [str(p) for p in loc]
    return ".".join(parts) or "body"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
    field = _field(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "json_invalid":  # refused before the route's dependencies: auth and limit here
        from .auth import charge  # auth raises ApiError: imported here, not at the top

        try:
            await run_in_threadpool(charge, request)  # the bucket is a Redis call
        except ApiError as refused:
            return await _api_error(request, refused)
        return JSONResponse(error_body("bad_json", f"the body is not JSON: {first.get('msg')}",
                                       "body"), status_code=422)
    return JSONResponse(error_body("invalid", f"{field}: {first.get('msg')}", field),
                        status_code=422)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status,
                        headers=exc.headers)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _lease_lost(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LeaseLost)
    reason = str(getattr(exc, "reason", "") or "lost")
    body = error_body("lease_lost", str(exc))
    body["error"]["reason"] = reason  # superseded | expired | released | unknown
    return JSONResponse(body, status_code=409)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("redis_unavailable", f"Redis is unavailable: {exc}"),
                        status_code=503, headers={"Retry-After": "1"})


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("not_found", str(exc)), status_code=404)


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("replay_refused", str(exc)), status_code=409)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(LeaseLost, _lease_lost)
    app.add_exception_handler(RegistryUnavailable, _unavailable)
    app.add_exception_handler(LetterNotFound, _not_found)
    app.add_exception_handler(ReplayRefused, _refused)


class BodyLimit:
    """A 413 for a body over ``limit`` bytes, by Content-Length or as it streams in, before
    any route (and so before Redis) sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, bounded, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(error_body("too_large", f"the request body exceeds {self.limit} bytes",
                                     "body")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
