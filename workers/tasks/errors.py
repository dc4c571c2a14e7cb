"""How an owned task's work fails, and how it is stopped: every tool's work raises these, and
the owned-task base turns each into a kind=error callback (or a retry).

``BadRequest`` (fix the request, never retry), ``TransientError`` (retry later,
``retry_after`` hints when), ``Cancelled`` (the owning run is gone, or the task was told to
stop). Any other ``TaskError`` means the tool refused or failed; retrying will not help.
"""

from __future__ import annotations

import threading


class TaskError(Exception):
    """The work could not produce its result; retrying the same request will not help."""


class BadRequest(TaskError, ValueError):
    """The request itself is wrong; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TransientError(TaskError):
    """Worth retrying later (429, 5xx, timeouts) once the tool's own retries ran out."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(TaskError):
    """The cancel token fired; the work stopped without a result."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CancelToken:
    """A one-way, thread-safe stop signal from the owner watch to the work."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the work to stop; the first reason given is kept."""
        with self._lock:
            if self._reason is None:
                self._reason = reason
        self._event.set()  # after the reason, so a woken waiter always sees it

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        return self._reason

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self._reason or "cancelled")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancel; True if cancelled."""
        return self._event.wait(max(0.0, seconds))


class Quarantined(Exception):
    """Raised by an owned task *after* its callback was quarantined (its verdict is written,
    once): Celery then reports the task as FAILURE with a task-failed event, so Flower and
    ``celery events`` never show undelivered work as a success. It is in ``OwnedTask.throws``:
    the worker logs it as an expected error (one INFO line, no traceback), and the message is
    acknowledged as any failed task's (no redelivery, no retry)."""

    def __init__(self, reason: str, dead_letter_id: str, detail: str = "") -> None:
        super().__init__(reason, dead_letter_id, detail)  # args: what pickling rebuilds
        self.reason, self.dead_letter_id, self.detail = reason, dead_letter_id, detail

    def __str__(self) -> str:
        return (f"callback quarantined: {self.reason}, dead letter {self.dead_letter_id}"
                + (f" ({self.detail})" if self.detail else ""))
