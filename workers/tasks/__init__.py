"""Owned tasks, whatever the tool: the task base, the per-process runtime, the owner watch,
cancellation and errors, and cron ticks. Knows no particular tool."""

from .errors import (
    BadRequest,
    Cancelled,
    CancelToken,
    Quarantined,
    TaskError,
    TransientError,
)
from .owned import OwnedContext, OwnedResult, OwnedTask, owned_task
from .runtime import OUTAGE_PATIENCE, WorkerRuntime, patiently
from .watch import OwnerWatch

__all__ = [
    "OUTAGE_PATIENCE",
    "BadRequest",
    "CancelToken",
    "Cancelled",
    "OwnedContext",
    "OwnedResult",
    "OwnedTask",
    "OwnerWatch",
    "Quarantined",
    "TaskError",
    "TransientError",
    "WorkerRuntime",
    "owned_task",
    "patiently",
]
