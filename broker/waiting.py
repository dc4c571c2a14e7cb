"""Taking a run's resume signals without ever losing one, for waits of any length.

A single BLPOP longer than the socket timeout made the client time out, drop the connection
and retry: a signal Redis popped in that moment was gone. Here a wait is a series of short
BLMOVEs (``wait_slice``: inside the socket timeout), and a signal is moved to
``<resume>:taken`` first and removed from there only once it is in hand: a reply lost on
the way leaves it in ``:taken``, where the next call finds it. One waiter per run.
``:taken`` expires ``keep`` seconds after a take, so a waiter that dies holding a signal
leaves nothing behind for good.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from ..ownership import as_text, unavailable_as_error, wait_slice

TAKEN = ":taken"      # suffix of the resume list: signals popped, not yet handed over
NO_WAIT = 0.001       # seconds: BLMOVE reads 0 as 'forever', so shorter means do not block


def take_signal(client: redis.Redis, key: str, timeout: float, keep: float) -> str | None:
    """The first signal of the list ``key``, waiting up to ``timeout`` seconds; None if
    none came. A signal is returned once, even when a reply was lost along the way."""
    taken = key + TAKEN
    step = wait_slice(client)
    keep_ms = max(1, round(keep * 1000))
    deadline = time.monotonic() + timeout  # a wait, not an ownership decision
    while True:
        left = deadline - time.monotonic()
        with unavailable_as_error():
            # a signal an earlier call took but never handed over comes first
            held: Any = client.lindex(taken, 0)
            if held is None:
                # one round trip: Redis sets the expiry right after the move, whatever the
                # client does meanwhile
                pipe = client.pipeline(transaction=False)
                if left > NO_WAIT:
                    # redis-py types BLMOVE's timeout as int; Redis >= 6 takes fractional s
                    pipe.blmove(key, taken, min(left, step), "LEFT",  # type: ignore[arg-type]
                                "RIGHT")
                else:
                    pipe.lmove(key, taken, "LEFT", "RIGHT")
                pipe.pexpire(taken, keep_ms)
                held = pipe.execute()[0]
        if held is not None:
            with unavailable_as_error():
                client.lrem(taken, 1, held)  # handed over: acknowledged
            return as_text(held)
        if left <= NO_WAIT:
            return None
