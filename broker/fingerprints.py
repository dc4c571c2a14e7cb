"""Secret fingerprints: each worker (at start-up) and each runtime (when it starts runs)
records a fingerprint of its signing secret in Redis, so a secret that differs between them is
reported at once (by the worker, the runtime and ``celery leasegate doctor``), not discovered
by a lost image. A fingerprint is HMAC-SHA256(secret, "leasegate-fingerprint"), 16 hex digits:
it names a secret without revealing it, and tells nothing usable for signing.

Layout: ``<ns>:fingerprints:<role>`` (role ``worker`` or ``runtime``), a sorted set of
``<fingerprints>|<name>`` scored by the Redis server time (ms) of its last record; a worker
lists every secret it accepts (current first, then those of a rotation), a runtime the one
it signs with. Entries older
than ``RECENT`` are dropped as each record arrives; the key expires with its last writer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Literal

import redis

from ..ownership import as_text, server_time_ms, unavailable_as_error
from .keys import BrokerKeys

Role = Literal["worker", "runtime"]
RECENT = 24 * 3600.0   # seconds a record counts as "recent"
FINGERPRINT_LABEL = b"leasegate-fingerprint"


def secret_fingerprint(secret: bytes) -> str:
    """16 hex digits naming ``secret``; equal secrets, equal fingerprints."""
    return hmac.new(secret, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def fingerprint_key(keys: BrokerKeys, role: Role) -> str:
    return keys.global_key(f"fingerprints:{role}")


def record(client: redis.Redis, keys: BrokerKeys, role: Role, name: str,
           fingerprints: list[str]) -> None:
    """Note that ``name`` (a worker's hostname, a runtime's host:pid) has these secrets now;
    its earlier records (another secret before a restart) go."""
    key = fingerprint_key(keys, role)
    with unavailable_as_error():
        now = server_time_ms(client)
        old = [as_text(m) for m in client.zrange(key, 0, -1)
               if as_text(m).split("|", 1)[-1] == name]
        pipe = client.pipeline(transaction=True)
        if old:
            pipe.zrem(key, *old)
        pipe.zadd(key, {f"{','.join(fingerprints)}|{name}": now})
        pipe.zremrangebyscore(key, "-inf", now - int(RECENT * 1000))
        pipe.pexpire(key, int(RECENT * 1000))
        pipe.execute()


def recent(client: redis.Redis, keys: BrokerKeys, role: Role,
           within: float = RECENT) -> dict[str, list[str]]:
    """Name -> its fingerprints, of those that recorded within the last ``within`` seconds."""
    key = fingerprint_key(keys, role)
    with unavailable_as_error():
        now = server_time_ms(client)
        members = client.zrangebyscore(key, now - int(within * 1000), "+inf")
    found: dict[str, list[str]] = {}
    for member in members:
        fingerprints, _, name = as_text(member).partition("|")
        found[name] = fingerprints.split(",")
    return found


def runtimes_refused(accepted: Iterable[str], runtimes: dict[str, list[str]]) -> dict[str, str]:
    """Runtime -> its signing fingerprint, for those a worker accepting ``accepted`` refuses."""
    ok = set(accepted)
    return {name: fps[0] for name, fps in runtimes.items() if fps and fps[0] not in ok}


def workers_refusing(signing: str, workers: dict[str, list[str]]) -> dict[str, list[str]]:
    """Worker -> the fingerprints it accepts, for those that refuse the ``signing`` secret."""
    return {name: fps for name, fps in workers.items() if signing not in fps}
