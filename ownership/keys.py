"""Key names and the checks on the names they are built from.

The deployment is split into SHARDS fixed shards; a session key belongs to one (crc32) and every
key of it, and every deployment-wide key its scripts write (dead letters, counters, the pending
index), carries that shard's hash tag: each atomic operation stays in one Redis Cluster slot.
Layout: ``<ns>:{<shard tag>}:{<session key>}:...`` for a session, ``<ns>:{<shard tag>}:<name>``
for a shard's deployment-wide keys. The same layout on a standalone Redis.
"""

from __future__ import annotations

import zlib

from .connection import glob_escape

MAX_SESSION_KEY_BYTES = 512
MAX_RUN_ID_BYTES = 128
MAX_NAMESPACE_BYTES = 64


def _check_name(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    size = len(value.encode())
    if size == 0:
        raise ValueError(f"{field} must not be empty")
    if size > limit:
        raise ValueError(f"{field} is {size} bytes long; the limit is {limit} bytes")
    if "{" in value or "}" in value:
        raise ValueError(f"{field} must not contain '{{' or '}}' (they delimit the hash tag)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{field} must not contain control characters")
    return value


def check_session_key(value: object) -> str:
    return _check_name("session_key", value, MAX_SESSION_KEY_BYTES)


def check_run_id(value: object) -> str:
    value = _check_name("run_id", value, MAX_RUN_ID_BYTES)
    if ":" in value:
        raise ValueError("run_id must not contain ':' (it separates key parts)")
    return value


def check_namespace(value: object) -> str:
    return _check_name("namespace", value, MAX_NAMESPACE_BYTES)


# The number of shards is part of the layout: changing it moves every key.
SHARDS = 32
# Hash tags whose Cluster slots (CRC16 % 16384) lie in the middle of 32 equal slot ranges, so
# the shards spread evenly over any number of primaries that split the slots in ranges
# (tests/ownership/test_cluster.py checks each slot).
SHARD_TAGS = ("00.57", "01.65", "02.1", "03.12", "04.44", "05.76", "06.33", "07.3",
              "08.63", "09.51", "10.120", "11.35", "12.155", "13.33", "14.14", "15.26",
              "16.11", "17.23", "18.4", "19.147", "20.15", "21.27", "22.62", "23.2",
              "24.135", "25.35", "26.1", "27.42", "28.21", "29.13", "30.45", "31.77")


def shard_of(session_key: str) -> int:
    """The shard a session key belongs to, for good (crc32: cheap, stable, evenly spread)."""
    return zlib.crc32(session_key.encode()) % SHARDS


class Keys:
    """Builds the key names of one namespace (``lg`` unless configured)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)

    def shard_prefix(self, shard: int) -> str:
        return f"{self.namespace}:{{{SHARD_TAGS[shard]}}}:"

    @property
    def shards(self) -> range:
        return range(SHARDS)

    def session_prefix(self, session_key: str) -> str:
        return f"{self.shard_prefix(shard_of(session_key))}{{{session_key}}}:"

    def session_pattern(self, session_glob: str, rest: str) -> str:
        """A SCAN MATCH pattern for session keys: ``session_glob`` and ``rest`` are globs."""
        return f"{glob_escape(self.namespace)}:{{*}}:{{{session_glob}}}:{rest}"

    def split_session_key(self, key: str) -> tuple[str, str]:
        """``<ns>:{<tag>}:{<sk>}:<rest>`` -> (sk, rest); ValueError for any other key."""
        head = f"{self.namespace}:{{"
        tag_end = key.find("}:{", len(head)) if key.startswith(head) else -1
        sk_end = key.find("}:", tag_end + 3)
        if tag_end < 0 or sk_end < 0:
            raise ValueError(f"{key!r} is not a session key of namespace {self.namespace!r}")
        return key[tag_end + 3:sk_end], key[sk_end + 2:]

    def fence(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "fence"

    def owner(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "owner"

    def run_prefix(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "run:"

    def run(self, session_key: str, run_id: str) -> str:
        return self.run_prefix(session_key) + run_id

    def metrics(self, shard: int) -> str:
        """One shard's counters (a hash); the metrics exporter sums the shards."""
        return self.shard_key(shard, "metrics")

    def shard_key(self, shard: int, name: str) -> str:
        """A deployment-wide key kept per shard (written by a session's scripts)."""
        return self.shard_prefix(shard) + name

    def global_key(self, name: str) -> str:
        """A deployment-wide key no session's script touches (one slot of its own)."""
        return f"{self.namespace}:{name}"

