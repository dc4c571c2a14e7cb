"""A RabbitMQ vhost of its own for a test run: created with ``rabbitmqctl`` on the machine's
RabbitMQ (127.0.0.1:5672, guest/guest), deleted at the end with every queue in it.

``LEASEGATE_TEST_RABBITMQ`` (read in benchmarks/rabbitmq.py) overrides the server
(``amqp://user:pw@host:port``); ``rabbitmqctl`` must reach that node (run as root, or as the
rabbitmq user).
"""

from __future__ import annotations

import shutil
import socket
import uuid
from types import TracebackType
from typing import Any

import pytest

from benchmarks.rabbitmq import SERVER, rabbitmqctl


def require_rabbitmq() -> None:
    """Fail (naming what is missing) where no RabbitMQ is at hand: a skip would hide a
    missing install step, and the suite's machines run one on 127.0.0.1:5672."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("RabbitMQ tests need rabbitmqctl and a running RabbitMQ "
                    "(apt-get install rabbitmq-server), or LEASEGATE_TEST_RABBITMQ")
    host, _, port = SERVER.rsplit("@", 1)[-1].partition(":")
    try:
        socket.create_connection((host, int(port or 5672)), timeout=5).close()
    except OSError as exc:
        pytest.fail(f"no RabbitMQ at {host}:{port} ({exc}): start it, or point "
                    "LEASEGATE_TEST_RABBITMQ at one")


class RabbitVhost:
    """``with RabbitVhost() as vhost: vhost.url`` -> ``amqp://.../<fresh vhost>``."""

    def __init__(self, prefix: str = "lgtest") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.user = SERVER.split("://", 1)[1].split(":", 1)[0]
        self.url = f"{SERVER}/{self.name}"

    def __enter__(self) -> RabbitVhost:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, self.user, ".*", ".*", ".*")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        rabbitmqctl("delete_vhost", self.name)

    def queue_types(self) -> dict[str, str]:
        """Each queue of the vhost -> its type (``quorum``, ``classic``)."""
        out = rabbitmqctl("list_queues", "-p", self.name, "--no-table-headers", "name", "type")
        return dict(line.split("\t")[:2] for line in out.splitlines() if line.strip())

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue`` now (a passive declare: rabbitmqctl's counts are
        statistics, seconds old). With no consumer left, unacknowledged ones count too."""
        with self._connection() as conn:
            channel = conn.channel()
            _, ready, _ = channel.queue_declare(queue, passive=True)
            channel.close()
        return int(ready)

    def publish_raw(self, queue: str, body: bytes, **properties: Any) -> None:
        """Publish ``body`` as it is (no serializer, only the given AMQP properties) to
        ``queue`` through the default exchange, the way a stray producer would."""
        import amqp

        with self._connection() as conn:
            channel = conn.channel()
            channel.basic_publish(amqp.Message(body, **properties), exchange="",
                                  routing_key=queue)
            channel.close()

    def _connection(self) -> Any:
        import amqp

        host = SERVER.rsplit("@", 1)[-1]
        user, password = SERVER.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)
        return amqp.Connection(host=host, userid=user, password=password,
                               virtual_host=self.name)
