"""A RabbitMQ vhost of its own for a test run: created with ``rabbitmqctl`` on the machine's
RabbitMQ (127.0.0.1:5672, guest/guest), deleted at the end with every queue in it; or a TLS
node of our own beside it (``RabbitTlsNode``).

``LEASEGATE_TEST_RABBITMQ`` (read in benchmarks/rabbitmq.py) overrides the server
(``amqp://user:pw@host:port``); ``rabbitmqctl`` must reach that node (run as root, or as the
rabbitmq user).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from benchmarks.rabbitmq import SERVER, rabbitmqctl
from leasegate.testing.redis_server import RedisTls, free_port, terminate
from tests.support.helpers import wait_until


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


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # Debian's, not the sudo wrapper


class RabbitTlsNode:
    """A RabbitMQ node of our own with only a TLS listener (``amqps://``), certificates made by
    the test: started beside the machine's RabbitMQ, never touching it.

    Its own node name, ports, data, log and Erlang cookie (``HOME`` in the node's folder), so
    the machine's node and its ``rabbitmqctl`` are not involved. guest/guest, vhost ``/``.
    """

    def __init__(self, folder: Path, tls: RedisTls) -> None:
        self.folder = folder
        self.tls = tls
        self.port, self.node_port, self.dist_port = free_port(), free_port(), free_port()
        self.name = f"lgtls{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.boot_seconds = 0.0  # measured: how long the node took to accept amqps

    @property
    def url(self) -> str:
        return f"amqps://guest:guest@localhost:{self.port}//"

    def _write_conf(self) -> Path:
        conf = self.folder / "rabbitmq.conf"
        conf.write_text(
            "listeners.tcp = none\n"  # amqps only: a clear-text fallback cannot pass a test
            f"listeners.ssl.default = 127.0.0.1:{self.port}\n"
            f"ssl_options.cacertfile = {self.tls.ca}\n"
            f"ssl_options.certfile = {self.tls.cert}\n"
            f"ssl_options.keyfile = {self.tls.key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
            "consumer_timeout = 7200000\n")
        return conf

    def start(self, timeout: float = 60.0) -> RabbitTlsNode:
        if not os.path.exists(RABBITMQ_SERVER):
            pytest.fail(f"no {RABBITMQ_SERVER}: apt-get install rabbitmq-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.folder),  # the Erlang cookie of this node alone
            RABBITMQ_NODENAME=self.name, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.node_port), RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(self._write_conf()),
            RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.folder / "log"),
            RABBITMQ_PID_FILE=str(self.folder / "node.pid"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.folder / "rabbitmq-env.conf"),  # not /etc's
            ERL_EPMD_ADDRESS="127.0.0.1")
        (self.folder / "rabbitmq-env.conf").write_text("")
        (self.folder / "enabled_plugins").write_text("[].\n")
        started = time.monotonic()
        self._log = open(self.folder / "stdout.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([RABBITMQ_SERVER], env=env, cwd=self.folder,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        try:
            wait_until(self._accepts, timeout, interval=0.1,
                       message=f"RabbitMQ node {self.name} on amqps port {self.port}")
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - started
        return self

    def _accepts(self) -> bool:
        """One amqps connection that completes the AMQP handshake (a listening port alone may
        still be booting)."""
        import amqp

        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"RabbitMQ node exited ({self.process.returncode}):\n"
                                 f"{self.log_tail()}")
        conn = amqp.Connection(host=f"localhost:{self.port}", userid="guest",
                               password="guest", ssl={"ca_certs": self.tls.ca,
                                                      "cert_reqs": ssl.CERT_REQUIRED},
                               connect_timeout=2)
        try:
            conn.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        conn.close()
        return True

    def log_tail(self, lines: int = 30) -> str:
        logs = [*sorted((self.folder / "log").glob("*.log")), self.folder / "stdout.log"]
        text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, timeout=30)  # RabbitMQ stops cleanly on SIGTERM
            self.process = None
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> RabbitTlsNode:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
