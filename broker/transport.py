"""The one broker module that speaks Celery: how an owned task travels, and how it is revoked.

The envelope rides in one namespaced message header (never in the arguments, so the work
function sees only its own); the runtime sends tasks by name and never imports worker code.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..ownership import broker_use_ssl
from .envelope import Envelope

HEADER = "leasegate"  # the one namespaced Celery message header that carries the envelope


class Route(NamedTuple):
    """Where a tool's Celery task goes: its registered name and default queue (a plain
    ``(task, queue)`` pair works wherever a Route does)."""

    task: str
    queue: str


# The bundled tool; the workers register their task under exactly this name and queue.
IMAGE_GENERATE = Route("leasegate.image_generate", "media")
DEFAULT_TASKS: dict[str, Route] = {"image_generate": IMAGE_GENERATE}


def header_value(env: Envelope) -> str:
    """The envelope as a header value: text, since kombu's Redis transport JSON-encodes headers."""
    return base64.b64encode(env.encode()).decode()


def wire_from_header(value: object) -> bytes:
    """Undo ``header_value``; anything unreadable becomes the bytes the gate will quarantine."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode(), validate=True)
        except ValueError:
            return value.encode()
    if isinstance(value, bytes):
        return value
    return repr(value).encode()


def routes(tasks: Mapping[str, tuple[str, str] | Route] | None) -> dict[str, Route]:
    """A tool -> Route map: the bundled tools plus ``tasks`` (``(task name, queue)`` pairs or
    Routes), which add tools or re-route a bundled one, never remove one."""
    return {tool: Route(*r) for tool, r in {**DEFAULT_TASKS, **(tasks or {})}.items()}


def kombu_url(broker_url: str) -> str:
    """A Redis URL as kombu takes it: redis-py's ``unix:///path?db=N`` is kombu's
    ``redis+socket:///path?virtual_host=N``; anything else is kombu's already."""
    if not broker_url.startswith("unix://"):
        return broker_url
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(broker_url)
    query = dict(parse_qsl(parts.query))
    if "db" in query:
        query["virtual_host"] = query.pop("db")
    auth = f"{parts.username or ''}:{parts.password}@" if parts.password else ""
    return f"redis+socket://{auth}{parts.path}" + (f"?{urlencode(query)}" if query else "")


# amqps:// (RabbitMQ over TLS): the files py-amqp's TLS context is built from; the server's
# certificate is always verified, against the system's CAs when no CA file is given
BROKER_TLS_CA = "LEASEGATE_BROKER_TLS_CA"
BROKER_TLS_CERT = "LEASEGATE_BROKER_TLS_CERT"
BROKER_TLS_KEY = "LEASEGATE_BROKER_TLS_KEY"
# sentinel:// (kombu's Redis Sentinel transport): the primary the sentinels watch
BROKER_MASTER_NAME = "LEASEGATE_BROKER_MASTER_NAME"


def _amqp_use_ssl(env: Mapping[str, str]) -> dict[str, Any]:
    """py-amqp's ``ssl`` options from the LEASEGATE_BROKER_TLS_* files; ValueError naming the
    setting whose file is missing."""
    files = {name: env[name] for name in (BROKER_TLS_CA, BROKER_TLS_CERT, BROKER_TLS_KEY)
             if env.get(name)}
    for name, path in files.items():
        if not os.path.isfile(path):
            raise ValueError(f"{name}={path} is not a readable file")
    if (BROKER_TLS_CERT in files) != (BROKER_TLS_KEY in files):
        raise ValueError(f"{BROKER_TLS_CERT} and {BROKER_TLS_KEY} go together: set both or "
                         "neither")
    # server_hostname None: py-amqp checks the certificate names the host of the URL
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": None}
    for key, name in (("ca_certs", BROKER_TLS_CA), ("certfile", BROKER_TLS_CERT),
                      ("keyfile", BROKER_TLS_KEY)):
        if name in files:
            options[key] = files[name]
    return options


def broker_options(broker_url: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a Celery app needs besides the URL to reach this broker: ``broker_use_ssl`` for
    ``rediss://`` (LEASEGATE_REDIS_TLS_*) and ``amqps://`` (LEASEGATE_BROKER_TLS_*), the
    master name in ``broker_transport_options`` for ``sentinel://``. ValueError naming the
    setting that is missing or wrong."""
    env = os.environ if env is None else env
    scheme = broker_url.split("://", 1)[0]
    if scheme == "rediss":
        return {"broker_use_ssl": broker_use_ssl(env)}
    if scheme == "amqps":
        return {"broker_use_ssl": _amqp_use_ssl(env)}
    if scheme == "sentinel":
        master = env.get(BROKER_MASTER_NAME, "").strip()
        if not master:
            raise ValueError(
                f"LEASEGATE_BROKER_URL is a sentinel:// URL but {BROKER_MASTER_NAME} is not "
                "set: name the primary the sentinels watch (their `sentinel monitor <name>`)")
        return {"broker_transport_options": {"master_name": master}}
    return {}


def explain_broker_tls_failure(message: str) -> str:
    """An amqps:// certificate refusal names the setting that fixes it; others pass as is."""
    if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
        return (f"{message} (the broker's TLS certificate was not trusted: set "
                f"{BROKER_TLS_CA} to the PEM file of the CA that signed it)")
    return message


class Transport:
    """Sends owned tasks through a Celery app (any app on the workers' broker) and revokes
    them. ``app`` None: a runtime that only reads and releases, never submits."""

    def __init__(self, app: Any = None) -> None:
        self.app = app

    @classmethod
    def for_broker(cls, broker_url: str) -> Transport:
        from celery import Celery  # the runtime needs Celery only to send, never worker code

        app = Celery("leasegate-runtime", broker=kombu_url(broker_url), set_as_current=False)
        options = broker_options(broker_url)  # TLS files, a sentinel master name
        transport_options = dict(options.pop("broker_transport_options", {}))
        if broker_url.split("://", 1)[0] in ("amqp", "amqps", "pyamqp"):
            # the workers declare their queues as quorum queues (workers/rabbitmq.py), and
            # RabbitMQ refuses a second declaration with other arguments; a submit returns
            # only once RabbitMQ confirmed the message (publisher confirms)
            app.conf.update(task_default_queue_type="quorum",
                            task_create_missing_queue_type="quorum")
            transport_options["confirm_publish"] = True
        app.conf.update(options, broker_transport_options=transport_options)
        return cls(app)

    def send(self, route: tuple[str, str], env: Envelope, kwargs: Mapping[str, Any],
             queue: str | None = None) -> None:
        if self.app is None:
            raise RuntimeError("submit needs a Celery app: Client(..., celery_app=app) "
                               "or Client.from_url(...)")
        task, default_queue = route
        self.app.send_task(task, kwargs=dict(kwargs), task_id=env.task_id,
                           queue=queue or default_queue, serializer="msgpack",
                           headers={HEADER: header_value(env)})

    def revoke(self, task_ids: Iterable[str]) -> bool:
        """Revoke queued tasks; False when there is no app to do it with."""
        if self.app is None:
            return False
        self.app.control.revoke(list(task_ids))
        return True
