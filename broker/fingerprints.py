"""Secret fingerprints: each worker (at start-up) and each runtime (when it starts runs)
records a fingerprint of its signing secret in Redis, so a secret that differs between them is
reported at once (by the worker, the runtime and ``celery leasegate doctor``), not discovered
by a lost image. A fingerprint is HMAC-SHA256(secret, "leasegate-fingerprint"), 16 hex digits:
it names a secret without revealing it, and tells nothing usable for signing.

Layout: ``<ns>:fingerprints:<role>`` (role ``worker`` or ``runtime``), a sorted set of
``<fingerprints>|<name>`` scored by the Redis server time (ms) of its last record; a worker
lists every secret it accepts (current first, then those of a rotation), a runtime the one
it signs with. Bounded, whatever the number of processes that come and go (a runtime is named
by host and pid: every restart is a new name): as each record arrives (``fingerprint-1.lua``,
on Redis server time), records older than ``RECENT`` go and, past ``MAX_RECORDS``, the oldest;
the key expires ``RECENT`` after its last record.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Literal

import redis

from ..ownership import Scripts, as_text, server_time_ms, unavailable_as_error
from .keys import BrokerKeys

Role = Literal["worker", "runtime"]
RECENT = 24 * 3600.0   # seconds a record counts as "recent"
MAX_RECORDS = 1000     # records kept per role, the most recent; older ones go first
FINGERPRINT_LABEL = b"leasegate-fingerprint"


def secret_fingerprint(secret: bytes) -> str:
    """16 hex digits naming ``secret``; equal secrets, equal fingerprints."""
    return hmac.new(secret, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def fingerprint_key(keys: BrokerKeys, role: Role) -> str:
    return keys.global_key(f"fingerprints:{role}")


def record(scripts: Scripts, keys: BrokerKeys, role: Role, name: str,
           fingerprints: list[str]) -> int:
    """Note that ``name`` (a worker's hostname, a runtime's host:pid) has these secrets now;
    its earlier records (another secret before a restart) go, and so do records past
    ``RECENT`` or beyond the ``MAX_RECORDS`` most recent. Returns how many are kept.
    ``scripts``: the broker's (a ``Client``'s ``scripts``)."""
    with unavailable_as_error():
        kept = scripts("fingerprint", [fingerprint_key(keys, role)],
                       [f"{','.join(fingerprints)}|{name}", int(RECENT * 1000), MAX_RECORDS])
    return int(kept)


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
