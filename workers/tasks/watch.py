"""The owner watch: cancels work whose owning run is gone, so it stops at its next checkpoint."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ...broker import Envelope
from ...ownership import RegistryUnavailable
from .errors import CancelToken

if TYPE_CHECKING:
    from .runtime import WorkerRuntime


class OwnerWatch:
    """One thread per process asks the gate, every ``interval`` seconds, whether the owners of
    the tasks running here are still there, and cancels the work of those that are gone
    (a thread per task would cost more than a short task)."""

    def __init__(self, runtime: WorkerRuntime, interval: float) -> None:
        self.runtime, self.interval = runtime, interval
        self._watched: dict[str, tuple[Envelope, CancelToken]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, env: Envelope, cancel: CancelToken) -> None:
        with self._lock:
            self._watched[env.callback_id] = (env, cancel)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="leasegate-owner-watch")
                self._thread.start()

    def unwatch(self, env: Envelope) -> None:
        with self._lock:
            self._watched.pop(env.callback_id, None)

    def _run(self) -> None:
        pace = threading.Event()  # never set: a periodic pace, not a synchronisation
        while not pace.wait(self.interval):
            with self._lock:
                watched = list(self._watched.values())
            for env, cancel in watched:
                try:
                    admission = self.runtime.gate.check(env)
                except RegistryUnavailable:
                    continue  # cannot tell: keep working; the gate decides at delivery
                if not admission.admitted:
                    cancel.cancel(admission.reason or "owner gone")
                    self.unwatch(env)
