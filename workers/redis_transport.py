"""Kombu's Redis transport, with poison on the queue quarantined instead of fatal.

An item pushed straight onto a queue list (``LPUSH media 'garbage'``) is decoded by kombu's
``Channel._brpop_read`` inside the worker's event loop, before any consumer hook: a
JSONDecodeError there ends the worker (and the item, already popped, is gone). JSON of the
wrong shape (``5``, ``{}``) fails a step later, building the message or recording it as
unacknowledged. This Channel checks every popped item the way kombu is about to use it; one
it cannot use goes to the dead letters as ``malformed`` with its raw bytes (the gate's
``quarantine_raw``: one letter per distinct input), and the worker reads the next item.

``install()`` selects it for redis:// and rediss:// brokers (``broker_transport``) and puts
the leasegate Redis and namespace in ``broker_transport_options``, where the channel finds them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any

from ..broker import Client, MalformedEnvelope
from .config import INSECURE_DEV_SECRET

log = logging.getLogger("leasegate.workers")

# kombu is partly typed, its Redis channel's internals not: they are used as Any, here only
kombu_redis: Any = importlib.import_module("kombu.transport.redis")
bytes_to_str: Any = importlib.import_module("kombu.utils.encoding").bytes_to_str
loads: Any = importlib.import_module("kombu.utils.json").loads

URL_OPTION = "leasegate_redis_url"        # broker_transport_options keys install() sets
NAMESPACE_OPTION = "leasegate_namespace"
TRANSPORT = "leasegate.workers.redis_transport:Transport"


def message_problem(payload: Any, channel: Any) -> str | None:
    """Why kombu cannot take ``payload`` (a decoded queue item) as a message; None if it can."""
    if not isinstance(payload, Mapping):
        return f"a queue item must be a JSON object, not {type(payload).__name__}"
    try:
        message = channel.Message(payload, channel=channel)  # what basic_consume builds
    except Exception as exc:  # any failure here would end the worker's event loop
        return f"not a kombu message ({type(exc).__name__}: {exc})"
    info = message.delivery_info
    if not isinstance(info, Mapping) or "exchange" not in info or "routing_key" not in info:
        return "delivery_info lacks exchange or routing_key"
    if not isinstance(message.delivery_tag, str):
        return "delivery_tag is not a string"
    return None


class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel whose popped items are checked before kombu uses them."""

    _leasegate: Client | None = None

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's own method, with the decode of the popped item checked (see the docstring)
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP",
                                                        **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next iteration reconnects
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._checked(item, dest)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7 only
            if flush is not None:
                flush()

    def _get(self, queue: str) -> Any:
        # the polling path (basic_get, drain without the event loop): same check
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    payload = self._checked(item, queue)
                    if payload is not None:
                        return payload
            self._maybe_update_queues_expire(client, queue)
            raise kombu_redis.Empty()

    def _checked(self, item: bytes | str, queue: str) -> Any:
        """The decoded item, or None once it is quarantined."""
        raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogateescape")
        try:
            payload = loads(bytes_to_str(item))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
            problem: str | None = f"not JSON ({type(exc).__name__}: {exc})"
        else:
            problem = message_problem(payload, self)
        if problem is None:
            return payload
        self._quarantine(raw, f"queue {queue}: {problem}")
        return None

    def _quarantine(self, raw: bytes, problem: str) -> None:
        try:
            verdict = self._gate_client().gate.quarantine_raw(
                raw, MalformedEnvelope(problem, raw))
        except Exception:  # the item is popped: its bytes must at least reach the log
            log.exception("could not quarantine a poison queue item (%s): %r", problem, raw)
            return
        log.warning("poison queue item quarantined as dead letter %s: %s", verdict.entry_id,
                    problem)

    def _gate_client(self) -> Client:
        if self._leasegate is None:
            from ..ownership import connect

            options = self.connection.client.transport_options or {}
            url = options.get(URL_OPTION)
            if not url:
                raise RuntimeError(f"broker_transport_options has no {URL_OPTION}: "
                                   "install() sets it")
            # quarantine_raw signs nothing: the secret is never used here
            self._leasegate = Client(connect(str(url)),
                                     str(options.get(NAMESPACE_OPTION) or "lg"),
                                     secret=INSECURE_DEV_SECRET)
        return self._leasegate


class Transport(kombu_redis.Transport):  # type: ignore[misc]
    """Kombu's Redis transport with ``Channel`` above."""

    Channel = Channel
