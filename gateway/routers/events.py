"""``GET /v1/runs/{run}/events``: the run's inbox pushed as Server-Sent Events.

One ``entry`` event per inbox entry (SSE id = its seq), ``state`` events when the run's state
changes (the last one when it ends: superseded, expired or released, and the stream closes),
``: hb`` comments while quiet. ``Last-Event-ID`` (or ``?last_event_id=``) resumes after that
seq: nothing lost, nothing twice. Any ``serve`` process can serve any stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...ownership import (
    Registry,
    RegistryUnavailable,
    RunState,
    RunStatus,
    connect_async,
    status_from_reply,
)
from ..errors import ApiError
from ..runs import CallerRun, caller_run
from ..runtime_models import errors
from ..streaming import InboxStream, StreamSettings, sse
from .runs import status_body

router = APIRouter(tags=["events"])

EVENTS_DOC = ("`text/event-stream`. `event: entry` carries an InboxEntry (`id:` its seq); "
              "`event: state` carries a RunStatus; `: hb` comments are heartbeats. The "
              "stream ends after the state event of a run that ended.")


def async_redis(request: Request, settings: StreamSettings) -> aioredis.Redis:
    """The process's asyncio client, made on first use inside the server's event loop."""
    found: aioredis.Redis | None = getattr(request.app.state, "async_redis", None)
    if found is None:
        url = request.app.state.gateway.settings.worker.redis_url
        # a blocked XREAD lasts at most poll (or heartbeat) seconds: well inside the timeout
        found = connect_async(
            url, request.app.state.gateway.client.redis,
            socket_timeout=max(settings.poll, settings.heartbeat) + 30,
            socket_connect_timeout=2, max_connections=settings.max_streams + 64)
        request.app.state.open_streams = 0
        request.app.state.async_redis = found
    return found


async def counted(request: Request, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """The stream, counted among the process's open ones; a Redis outage mid-stream ends it
    with an ``error`` event: reconnect with Last-Event-ID once Redis is back, nothing lost."""
    request.app.state.open_streams += 1
    try:
        async for event in events:
            yield event
    except (RedisConnectionError, RedisTimeoutError, RegistryUnavailable) as exc:
        yield sse("error", {"error": {"code": "redis_unavailable",
                                      "message": f"Redis is unavailable: {exc}"}})
    finally:
        request.app.state.open_streams -= 1


def async_registry(request: Request, redis: aioredis.Redis) -> Registry:
    """A registry whose scripts run on the asyncio client (their calls return awaitables)."""
    found: Registry | None = getattr(request.app.state, "async_registry", None)
    if found is None:
        namespace = request.app.state.gateway.client.keys.namespace
        found = Registry(cast(Any, redis), namespace)
        request.app.state.async_registry = found
    return found


def resume_after(header: str | None, query: int | None) -> int:
    if header is not None:
        if not header.strip().isdigit():
            raise ApiError(422, "invalid", f"Last-Event-ID must be an entry seq (a whole "
                           f"number >= 0), not {header[:40]!r}", "Last-Event-ID")
        return int(header.strip())
    return query or 0


@router.get("/v1/runs/{run}/events", operation_id="streamEvents",
            response_class=StreamingResponse,
            responses={200: {"description": EVENTS_DOC,
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                       **errors(401, 403, 404, 422, 503)})
async def stream_events(
        request: Request,
        last_event_id: int | None = Query(None, ge=0, description="resume after this seq "
                                          "(for clients that cannot set Last-Event-ID)"),
        last_event_header: str | None = Header(None, alias="Last-Event-ID"),
        target: CallerRun = Depends(caller_run)) -> StreamingResponse:  # noqa: B008
    """Hold this instead of polling the inbox: a parked run's runtime waits here."""
    after = resume_after(last_event_header, last_event_id)
    settings = StreamSettings.from_env()
    ref, run = target.run_ref, target.run
    registry = target.gw.client.registry

    async def status() -> RunStatus:
        # the registry's own status script, on the asyncio client: no thread per poll
        reply = await async_registry(request, redis).scripts(
            "status", [registry.keys.run(ref.session_key, ref.run_id)], [])
        found = status_from_reply(ref.session_key, ref.run_id, reply)
        if found.state is not RunState.UNKNOWN and (
                found.fence != ref.fence or (found.incarnation or "") != ref.incarnation):
            return RunStatus(ref.session_key, ref.run_id, RunState.UNKNOWN)
        return found

    async def state_body(found: RunStatus) -> dict[str, Any]:
        pending = await asyncio.to_thread(run.pending)
        body = status_body(target.ref, found, pending).model_dump(mode="json")
        if found.state is RunState.UNKNOWN:
            body["fence"] = ref.fence
        return body

    redis = async_redis(request, settings)
    first = await status()
    if first.state is RunState.UNKNOWN:
        raise ApiError(404, "run_not_found", "no such run: it never existed here or its "
                       "retention ran out", "run")
    if request.app.state.open_streams >= settings.max_streams:
        raise ApiError(503, "too_many_streams", f"this process holds {settings.max_streams} "
                       "streams (LEASEGATE_SSE_MAX_STREAMS): retry, or add a serve process")
    stream = InboxStream(redis, run.inbox.key, target.ref, after, status, state_body,
                         settings)
    return StreamingResponse(counted(request, stream.events(first)),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
