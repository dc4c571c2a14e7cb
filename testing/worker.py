"""A real Celery worker for the user's own app, in a thread of the test process
(``celery.contrib.testing.worker.start_worker``, as ``celery.contrib.pytest``'s fixture does):
the app is ``install()``-ed on the test's Redis, namespace and secret first."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..broker import Client, Route
from ..workers import OwnedTask, WorkerConfig, install
from .deployment import Deployment


def configure(app: Any, deployment: Deployment) -> Any:
    """Point ``app`` (installed at import or not) at the test's deployment and install it."""
    conf = app.conf
    conf.broker_url = deployment.redis_url
    conf.worker_hijack_root_logger = False  # pytest's log capture keeps its handlers
    if str(conf.broker_transport or "").startswith("leasegate."):
        conf.broker_transport = None  # so that install() sets it with this test's Redis
    conf.broker_transport_options = {**(conf.broker_transport_options or {}),
                                     **deployment.transport_options}
    base = getattr(app, "leasegate_config", None) or WorkerConfig.from_env({})
    config = dataclasses.replace(
        base, redis_url=deployment.redis_url, broker_url=deployment.redis_url,
        secret=deployment.secret, previous_secrets=(), insecure_dev=False,
        namespace=deployment.namespace, artifact_dir=str(deployment.artifact_dir),
        check_interval=min(base.check_interval, 0.2), cron_file=None, metrics_port=None)
    app.close()  # a broker connection pool of an earlier configuration is not reused
    earlier = getattr(app, "_leasegate_runtime", None)
    if earlier is not None:  # nor a worker runtime of an earlier test's namespace
        earlier[1].client.redis.close()
        app._leasegate_runtime = None
    return install(app, config)


def owned_routes(app: Any) -> dict[str, Route]:
    """Every owned task of ``app`` as a runtime submits it: tool -> (task name, queue)."""
    found = {}
    for name, task in app.tasks.items():
        if isinstance(task, OwnedTask):
            queue = app.amqp.router.route({}, name)["queue"].name
            found[task.tool_name] = Route(name, queue)
    return found


@contextmanager
def running_worker(app: Any, deployment: Deployment, client: Client,
                   queues: Sequence[str] | None = None, **options: Any) -> Iterator[Any]:
    """A solo-pool worker for ``app`` in a thread, serving ``queues`` (default: all of the
    app's); the client learns the app's owned tasks it did not know yet."""
    from celery.contrib.testing.worker import start_worker
    from celery.signals import worker_shutdown

    configure(app, deployment)
    for tool, route in owned_routes(app).items():
        client.tasks.setdefault(tool, route)
    # named every time: Celery keeps an earlier worker's selection on the app
    options["queues"] = list(app.amqp.queues if queues is None else queues)
    options.setdefault("loglevel", "WARNING")
    worker = None
    try:
        with start_worker(app, perform_ping_check=False, **options) as worker:
            yield worker
    finally:
        if worker is not None:
            # the embedded worker ends with a cold stop, which sends no worker_shutdown: send
            # it, so that leasegate gives back the queue claims of this test's namespace
            worker_shutdown.send(sender=worker)
