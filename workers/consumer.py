"""A worker consumer that quarantines what Celery cannot take apart, instead of dropping it or
dying on it.

What Celery 5.7's own consumer does with a bad message on a leasegate queue (checked with a
real ``celery worker`` on the Redis transport):

- a body that does not decode: logged, acknowledged, gone ("Can't decode message body");
- no ``task`` header, an unknown task, a content type it does not accept: logged, rejected
  without requeue, gone ("Received and deleted unknown message", "Received invalid task");
- a known task whose body decodes to the wrong shape (``5`` instead of ``[args, kwargs,
  embed]``): an uncaught TypeError ends the worker, and the message, still unacknowledged,
  is restored to the queue for the next worker to die on;
- a known task without an ``id`` header: a KeyError, which the Redis transport counts as a
  connection error, so the consumer reconnects, the message is restored and read again, for
  ever ("Frequent restarts detected").

``LeasegateConsumer`` sends every one of them to the dead letters (reason ``malformed``, the
raw body bytes kept, capped) and acknowledges the message, so the worker keeps serving. It is
installed by ``install()`` as ``worker_consumer``.

The dead-letter raw memo keeps one letter per distinct raw input: the same body arriving
again (a restored message, a resend) is one letter, not two.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer

from ..broker import MalformedEnvelope
from .tasks import WorkerRuntime

log = logging.getLogger("leasegate.workers")

MAX_CLAIM_CHARS = 128  # what a letter keeps of a message's claimed task id and name


def _text(value: object, limit: int = MAX_CLAIM_CHARS) -> str:
    text = value if isinstance(value, str) else "" if value is None else repr(value)
    return text[:limit]


def raw_body(message: Any) -> bytes:
    """The message body as bytes, as the transport handed it over (anything else: its JSON or
    repr, so that the letter still shows what arrived)."""
    body = getattr(message, "body", None)
    if isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    if body is None and not hasattr(message, "body"):
        try:  # kombu hands on_decode_error the transport's own dict when it cannot wrap it
            return json.dumps(message, default=repr, sort_keys=True).encode()
        except (TypeError, ValueError):
            return repr(message).encode()
    return repr(body).encode()


def message_problem(message: Any) -> str | None:
    """Why Celery's task strategy would choke on ``message`` (None: let Celery have it).

    Only checks what the strategy and ``Request`` assume without checking: decoding errors and
    unknown tasks are Celery's to find and report to the ``on_*`` hooks below.
    """
    headers = getattr(message, "headers", None)
    if headers is None:
        return None  # Celery's own path reports it as an unknown message
    if not isinstance(headers, Mapping):
        return f"headers are a {type(headers).__name__}, not a map"
    if "task" not in headers:
        return None  # protocol 1 or not a task: Celery decodes and reports it
    if not isinstance(headers["task"], str):
        return f"the task header is a {type(headers['task']).__name__}, not a str"
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return "the task message has no id header (a str)"
    try:
        payload = message.payload  # decoded once; kombu caches it for the strategy
    except Exception:  # decode errors are Celery's to report, to on_decode_error
        return None
    if isinstance(payload, Mapping):
        return None if "args" in payload else "the body is a map without args"
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return (f"the body must be [args, kwargs, embed], not a {type(payload).__name__}"
                + (f" of {len(payload)}" if isinstance(payload, list | tuple) else ""))
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return f"the body's args are a {type(args).__name__}, not a list"
    if not isinstance(kwargs, Mapping):
        return f"the body's kwargs are a {type(kwargs).__name__}, not a map"
    if embed is not None and not isinstance(embed, Mapping):
        return f"the body's embed is a {type(embed).__name__}, not a map"
    return None


class LeasegateConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, with every bad message quarantined and acknowledged."""

    def quarantine(self, message: Any, detail: str) -> None:
        """Dead-letter ``message`` as malformed, then acknowledge it.

        If Redis cannot take the letter, the message stays unacknowledged: the transport
        restores it when the connection is re-established, or after the visibility timeout,
        and it is quarantined then. Never acknowledged without a letter.
        """
        raw = raw_body(message)
        headers = getattr(message, "headers", None)
        headers = headers if isinstance(headers, Mapping) else {}
        content = (f"content type {_text(getattr(message, 'content_type', None), 64)!r}, "
                   f"task {_text(headers.get('task'), 64)!r}, id {_text(headers.get('id'))!r}")
        error = MalformedEnvelope(f"{detail} ({content})", raw)
        error.claimed = {"task_id": _text(headers.get("id")),
                         "tool": _text(headers.get("task"), 64)}
        try:
            verdict = WorkerRuntime.for_app(self.app).gate.quarantine_raw(raw, error)
        except Exception as exc:  # RegistryUnavailable above all: never crash the consumer
            log.error("could not quarantine a malformed message (%s); left unacknowledged "
                      "for the transport to restore: %r", detail, exc)
            return
        log.warning("quarantined a malformed message: %s (dead letter %s%s)", error,
                    verdict.entry_id, ", seen before" if verdict.repeat else "")
        ack = getattr(message, "ack_log_error", None)
        if ack is not None and not getattr(message, "acknowledged", False):
            ack(log, self.connection_errors)

    # -- Celery's hooks --------------------------------------------------------------------

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self.quarantine(message, f"the body does not decode: {exc!r}"[:400])

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self.quarantine(message, "not a task message (no task header)")
        signals.task_rejected.send(sender=self, message=message, exc=None)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = getattr(message, "headers", None)
        headers = headers if isinstance(headers, Mapping) else {}
        self.quarantine(message, f"no task {_text(headers.get('task'), 64)!r} in this worker")
        signals.task_rejected.send(sender=self, message=message, exc=exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self.quarantine(message, f"invalid task message: {exc!r}"[:400])
        signals.task_rejected.send(sender=self, message=message, exc=exc)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle = super().create_task_handler(*args, **kwargs)
        # the Redis transport lists KeyError among its connection errors; here a KeyError
        # comes from the message, so it must not make the consumer reconnect
        transport_errors = tuple(e for e in (*self.connection_errors, *self.channel_errors)
                                 if e is not KeyError)

        def on_task_received(message: Any) -> Any:
            problem = message_problem(message)
            if problem is not None:
                return self.quarantine(message, problem)
            try:
                return handle(message)
            except transport_errors:
                raise
            except Exception as exc:
                if getattr(message, "acknowledged", False):
                    log.exception("error after a message was settled")
                    return None
                return self.quarantine(message, f"the worker cannot take it apart: {exc!r}"
                                       [:400])

        return on_task_received
