"""leasegate.workers: the Celery side (app, owned task base, image generation, celery CLI).

``celery -A leasegate.workers worker`` runs the bundled app; ``install(app)`` makes any other
Celery app leasegate-aware; ``owned_task`` declares a tool, whose work raises ``BadRequest``,
``TransientError`` or ``Cancelled`` (all ``TaskError``) and checks its ``CancelToken``.
Names load on first use: every ``celery`` invocation imports this package (for the ``dlq``
and ``runs`` commands), and most need none of it.

No submodule may share an exported name: once imported, it would shadow that name here (so the
app lives in ``default_app`` and ``install`` in ``installation``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cli.common import age  # an age in words, as the CLI and the console say it
    from .config import ConfigError, WorkerConfig
    from .default_app import app
    from .installation import install
    from .tasks import (
        BadRequest,
        Cancelled,
        CancelToken,
        OwnedContext,
        OwnedResult,
        OwnedTask,
        TaskError,
        TransientError,
        owned_task,
    )

_HOMES = {"app": ".default_app", "ConfigError": ".config", "WorkerConfig": ".config",
          "install": ".installation", "OwnedContext": ".tasks", "OwnedResult": ".tasks",
          "OwnedTask": ".tasks", "owned_task": ".tasks", "BadRequest": ".tasks",
          "Cancelled": ".tasks", "CancelToken": ".tasks", "TaskError": ".tasks",
          "TransientError": ".tasks", "age": ".cli.common"}

__all__ = ["BadRequest", "CancelToken", "Cancelled", "ConfigError", "OwnedContext",
           "OwnedResult", "OwnedTask", "TaskError", "TransientError", "WorkerConfig", "app",
           "age", "install", "owned_task"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
