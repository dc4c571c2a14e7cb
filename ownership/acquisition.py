"""One acquire, prepared: the checked keys and arguments of the acquire-run Lua function.

The registry's own ``acquire`` and the broker's ``start-run`` (acquire plus the prompt, in
one script) send the same first three KEYS and seven ARGV. ``Registry.prepare_acquire`` builds
them once, by name, and ``Registry.finish_acquire`` reads the reply, so no caller indexes into
positional lists or decodes the reply itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Acquisition:
    """Everything one acquire of a new run sends, checked. ``generated``: ``run_id`` is a
    fresh uuid4 of ours (the caller gave none). ``incarnation`` is fresh for every call, so a
    'run exists' reply naming it is this call's own record (a retry after a lost reply).
    """

    session_key: str
    run_id: str
    ttl: float           # seconds, as the caller gave it: the Lease reports it back
    ttl_ms: int
    policy: str          # 'supersede' | 'exclusive'
    retention_ms: int
    generated: bool
    incarnation: str     # random nonce of this acquire: an identity no data loss reissues
    fence_key: str       # <ns>:{<shard>}:{<sk>}:fence
    owner_key: str       # <ns>:{<shard>}:{<sk>}:owner
    run_key: str         # <ns>:{<shard>}:{<sk>}:run:<run id>
    run_prefix: str      # <ns>:{<shard>}:{<sk>}:run:  (the Lua reaches earlier runs by it)

    @property
    def keys(self) -> list[str]:
        """KEYS[1..3] of acquire_run (acquire-3.lua; start-run-4.lua adds the inbox)."""
        return [self.fence_key, self.owner_key, self.run_key]

    @property
    def argv(self) -> list[str | int]:
        """ARGV[1..7] of acquire_run (start-run-4.lua adds the prompt body as ARGV[8])."""
        return [self.run_prefix, self.session_key, self.run_id, self.ttl_ms, self.policy,
                self.retention_ms, self.incarnation]
