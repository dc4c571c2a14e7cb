"""The reaper: the verdict of last resort. A Celery hard time limit, a lost worker or any
failure outside leasegate can ack a task without a verdict, leaving its callback pending for
ever; the reaper gives every callback still pending past its deadline plus a grace one letter
in the dead letters (reason ``no_verdict``), so every callback ends somewhere, exactly once.

It reads the deployment-wide pending deadline index (a sorted set scored by each callback's
deadline in ms of Redis server time, written by the submit script); each due member is settled
by one Lua script (reap-6.lua) that checks again on server time, so two reapers, or a reaper
and a late delivery, never both write a verdict.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from ..ownership import Scripts, as_text, server_time_ms, shard_of, unavailable_as_error
from .keys import BrokerKeys
from .settings import Settings

log = logging.getLogger("leasegate.reaper")

REAPED = "reaped"
MAX_REAP_LIMIT = 10_000     # members settled per call: bounds one call's Redis work
SEPARATOR = "\n"            # between the parts of an index member (none of them holds one)


def index_member(session_key: str, run_id: str, callback_id: str) -> str:
    return SEPARATOR.join((session_key, run_id, callback_id))


def _check(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


class Reaper:
    """Settle callbacks the pending index says are overdue (``reap``)."""

    def __init__(self, client: redis.Redis, keys: BrokerKeys, scripts: Scripts,
                 settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.settings = settings

    @classmethod
    def for_client(cls, client: Any) -> Reaper:
        """The reaper of a ``broker.Client`` (same Redis, namespace, scripts and settings)."""
        return cls(client.redis, client.keys, client.scripts, client.settings)

    def reap(self, grace: float, limit: int = 1000) -> int:
        """Give every callback pending more than ``grace`` seconds past its deadline (at most
        ``limit`` of them, earliest deadline first) a ``no_verdict`` dead letter; drop index
        members whose callback has a verdict already. Returns how many letters it wrote."""
        grace_ms = int(_check("grace", grace, 0) * 1000)
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_REAP_LIMIT:
            raise ValueError(f"limit must be an int in 1..{MAX_REAP_LIMIT}, got {limit!r}")
        with unavailable_as_error():
            cutoff = server_time_ms(self.client) - grace_ms
            pipe = self.client.pipeline(transaction=False)
            for shard in self.keys.shards:
                pipe.zrangebyscore(self.keys.pending_index(shard), "-inf", cutoff,
                                   start=0, num=limit, withscores=True)
            replies: list[Any] = pipe.execute()
        # earliest deadline first over every shard, at most limit of them
        due = sorted((score, shard, as_text(member)) for shard, rows in enumerate(replies)
                     for member, score in rows)[:limit]
        return sum(self._settle(shard, member, grace_ms) for _, shard, member in due)

    def _settle(self, shard: int, member: str, grace_ms: int) -> int:
        index = self.keys.pending_index(shard)
        parts = member.split(SEPARATOR)
        if len(parts) != 3 or not all(parts) or shard_of(parts[0]) != shard:
            log.warning("pending index member %r is not <sk>\\n<run>\\n<callback> of this "
                        "shard: removed", member)
            with unavailable_as_error():
                self.client.zrem(index, member)
            return 0
        sk, run_id, cb = parts
        k, s = self.keys, self.settings
        keys = [index, k.pending(sk, run_id), k.callback(sk, run_id, cb), k.run(sk, run_id),
                k.dead_letters(shard), k.metrics(shard)]
        with unavailable_as_error():
            outcome, letter = self.scripts("reap", keys, [
                member, sk, run_id, cb, grace_ms, s.memo_ttl_ms, int(s.dlq_max_age * 1000),
                s.dlq_max_len])
        if as_text(outcome) != REAPED:
            return 0
        log.warning("no verdict for callback %s of run %s (%s) by its deadline + %d ms: "
                    "dead letter %s", cb, run_id, sk, grace_ms, as_text(letter))
        return 1
