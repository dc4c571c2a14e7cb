"""A RabbitMQ vhost of its own for a drill (``--broker rabbitmq``): created with ``rabbitmqctl``
on the machine's RabbitMQ, deleted at the end with every queue in it, so that no message of
an earlier drill is left to read."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator

SERVER = os.environ.get("LEASEGATE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")


def rabbitmqctl(*args: str) -> str:
    """Its output; RuntimeError with its message when it fails."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


@contextlib.contextmanager
def fresh_vhost(prefix: str = "lgdrill") -> Iterator[str]:
    """The broker URL of a new vhost (``LEASEGATE_TEST_RABBITMQ`` names the server)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    user = SERVER.split("://", 1)[1].split(":", 1)[0]
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield f"{SERVER}/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)
