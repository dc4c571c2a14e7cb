"""leasegate.workers: the Celery side (app, owned task base, image generation, celery CLI).

``celery -A leasegate.workers worker`` runs the bundled app; ``install(app)`` makes any other
Celery app leasegate-aware. Names load on first use: every ``celery`` invocation imports this
package (for the ``dlq`` and ``runs`` commands), and most need none of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bundled import app
    from .config import ConfigError, WorkerConfig
    from .integration import install
    from .owned import OwnedContext, OwnedResult, OwnedTask, owned_task

_HOMES = {"app": ".bundled", "ConfigError": ".config", "WorkerConfig": ".config",
          "install": ".integration", "OwnedContext": ".owned", "OwnedResult": ".owned",
          "OwnedTask": ".owned", "owned_task": ".owned"}

__all__ = ["ConfigError", "OwnedContext", "OwnedResult", "OwnedTask", "WorkerConfig", "app",
           "install", "owned_task"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
