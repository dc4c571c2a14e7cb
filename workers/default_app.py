"""The bundled app: ``celery -A leasegate.workers worker``, configured from the environment."""

from __future__ import annotations

from celery import Celery

from .config import WorkerConfig
from .installation import install

config = WorkerConfig.from_env()
app = Celery("leasegate", broker=config.broker_url, set_as_current=False)
app.conf.task_default_queue = "celery"
install(app, config)
