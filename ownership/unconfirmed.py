"""Acquisitions whose outcome the caller never learnt, kept so that a retry is the same call."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator

from .acquisition import Acquisition
from .errors import RegistryUnavailable

MAX_UNCONFIRMED = 1024   # acquisitions kept for a retry; the oldest go first


class Unconfirmed:
    """Acquisitions with a caller's run id whose outcome is unknown (RegistryUnavailable, and
    so NotDurable): a retry with the same session key and run id is the same call, with the
    same incarnation, so it finds its own run (or makes it, if a failover lost it) instead of
    'run_id already used'."""

    def __init__(self, limit: int = MAX_UNCONFIRMED) -> None:
        self._kept: OrderedDict[tuple[str, str], Acquisition] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def take(self, session_key: str, run_id: str) -> Acquisition | None:
        with self._lock:
            return self._kept.pop((session_key, run_id), None)

    @contextlib.contextmanager
    def kept(self, acquisition: Acquisition) -> Iterator[None]:
        """Keep ``acquisition`` for a retry if the block raises RegistryUnavailable."""
        try:
            yield
        except RegistryUnavailable:
            if not acquisition.generated:
                with self._lock:
                    self._kept[(acquisition.session_key, acquisition.run_id)] = acquisition
                    while len(self._kept) > self._limit:
                        self._kept.popitem(last=False)
            raise
