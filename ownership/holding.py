"""A lease kept alive by a background thread for the length of a ``with`` block.

``Registry.hold`` is the way in; this module is the machinery behind it (the lease object
that learns it was lost, the renewal thread, the release on exit), kept apart so the registry
module stays the plain request/reply calls.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import LeaseLost
from .lease import Lease, RunState

if TYPE_CHECKING:  # the registry imports this module: its type only, no import cycle
    from .registry import Policy, Registry


@dataclass(frozen=True)
class HeldLease(Lease):
    """The lease ``Registry.hold`` keeps renewed in the background."""

    lost_event: threading.Event = field(default_factory=threading.Event, compare=False,
                                        repr=False)
    lost_reason: list[str] = field(default_factory=list, compare=False, repr=False)

    @property
    def lost(self) -> bool:
        return self.lost_event.is_set()

    def check(self) -> None:
        """Raise ``LeaseLost`` if the background renewal found the run is no longer owned."""
        if self.lost:
            raise LeaseLost(self.lost_reason[0] if self.lost_reason else "unknown",
                            self.session_key, self.run_id)


@contextlib.contextmanager
def hold(registry: Registry, session_key: str, ttl: float, policy: Policy,
         run_id: str | None) -> Iterator[HeldLease]:
    """The body of ``Registry.hold``: acquire, renew every ttl/3 in the background, release
    on exit ('failed' if the block raised, else 'completed'); ``LeaseLost`` on exit if the
    lease was lost meanwhile."""
    base = registry.acquire(session_key, ttl, policy, run_id)
    held = HeldLease(base.session_key, base.run_id, base.fence, base.expires_at, base.ttl,
                     base.state, base.previous_run_id, base.incarnation)
    stop = threading.Event()
    renewer = threading.Thread(target=_keep_renewed, args=(registry, held, stop),
                               name=f"leasegate-renew-{held.run_id[:8]}", daemon=True)
    renewer.start()
    failed = False
    try:
        yield held
    except BaseException:
        failed = True
        raise
    finally:
        stop.set()
        renewer.join()
        if not held.lost:
            ended = registry.release(held, "failed" if failed else "completed")
            if ended.state is not RunState.RELEASED:
                # lost between the last beat and the exit: expired, superseded or gone
                held.lost_reason.append(ended.state.value)
                held.lost_event.set()
    held.check()


def _keep_renewed(registry: Registry, held: HeldLease, stop: threading.Event) -> None:
    interval = held.ttl / 3
    while not stop.wait(interval):
        try:
            registry.renew(held)
        except LeaseLost as lost:
            held.lost_reason.append(lost.reason)
            held.lost_event.set()
            return
        except Exception:
            continue  # cannot tell (Redis away, OOM...): try next beat; the lease expires
            # on its own if this goes on, and check() or the exit reports it
