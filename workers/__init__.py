"""leasegate.workers: the Celery side (app, owned task base, image generation, celery CLI).

``celery -A leasegate.workers worker`` runs the bundled app; ``install(app)`` makes any other
Celery app leasegate-aware.
"""

from .app import app
from .config import ConfigError, WorkerConfig
from .install import install
from .owned import OwnedContext, OwnedResult, OwnedTask, owned_task

__all__ = ["ConfigError", "OwnedContext", "OwnedResult", "OwnedTask", "WorkerConfig", "app",
           "install", "owned_task"]
