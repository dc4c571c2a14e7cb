"""Artifact collection: every artifact an inbox or a dead letter still references stays; the
store removes the rest once they are older than a grace period.

References are found with SCAN (TYPE and MATCH filtered) and read in pipelines, one batch of
keys at a time, so the cost is one pass over the namespace's keys and never blocks Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from ...ownership import glob_escape, unavailable_as_error
from ..keys import INBOX, BrokerKeys
from ..records import ref_digests
from .store import ArtifactStore, collect

SCAN_COUNT = 500
INBOX_PAGE = 200   # entries per XRANGE: an inbox's bodies can be large


def referenced_digests(client: redis.Redis, keys: BrokerKeys) -> set[str]:
    """The digests every run inbox and every dead letter (held or tombstone) references."""
    found: set[str] = set()
    with unavailable_as_error():
        # letters before inboxes: a replay copies a letter's references into an inbox before
        # a discard can drop them, so whatever a letter loses meanwhile is in an inbox read later
        # every shard's letters: <ns>:{<shard tag>}:dlq:letter:<id>
        letters = glob_escape(keys.namespace) + ":{*}:dlq:letter:*"
        for batch in _scan(client, letters, "hash"):
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.hget(key, "arts")
            for key, raw in zip(batch, pipe.execute(), strict=True):
                found |= ref_digests(raw, key)
        inboxes = keys.session_pattern("*", "run:*" + INBOX)
        for batch in _scan(client, inboxes, "stream"):
            for key in batch:
                found |= _inbox_digests(client, key)
    return found


def collect_artifacts(client: redis.Redis, keys: BrokerKeys, store: ArtifactStore,
                      grace: float) -> list[str]:
    """Remove the artifacts nothing references that were stored more than ``grace`` seconds
    ago; return their digests. ``grace`` must exceed the time from storing an artifact to the
    delivery that references it (the store's clock: file mtimes)."""
    return collect(store, referenced_digests(client, keys), grace)


def _scan(client: redis.Redis, pattern: str, kind: str, escape: int = 0) -> Iterator[list[str]]:
    """Batches of key names; ``escape``: length of a literal prefix to escape for MATCH."""
    match = glob_escape(pattern[:escape]) + pattern[escape:] if escape else pattern
    cursor: Any = 0
    while True:
        cursor, names = client.scan(cursor, match=match, count=SCAN_COUNT, _type=kind)
        if names:
            yield [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        if int(cursor) == 0:
            return


def _inbox_digests(client: redis.Redis, key: str) -> set[str]:
    found: set[str] = set()
    after = "-"
    while True:
        rows: Any = client.xrange(key, min=after, count=INBOX_PAGE)
        for entry_id, fields in rows:
            found |= ref_digests(fields.get(b"arts", fields.get("arts")), key)
            after = "(" + (entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
        if len(rows) < INBOX_PAGE:
            return found

