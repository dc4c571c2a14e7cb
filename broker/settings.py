"""Limits and retention of the broker layer, with the defaults the design names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..ownership import Durability, check_seconds

DAY = 86400.0


@dataclass(frozen=True)
class Settings:
    retention: float = 7 * DAY            # run records and inboxes, after the run ends
    dlq_max_age: float = 14 * DAY          # a dead letter older than this becomes a tombstone
    dlq_max_len: int = 100_000             # beyond this many, the oldest become tombstones
    dlq_body_cap: int = 16 * 1024          # larger result bodies are not kept in a dead letter
    max_envelope_bytes: int = 4096
    max_result_bytes: int = 256 * 1024     # a result body (msgpack) delivered to an inbox
    max_prompt_bytes: int = 256 * 1024
    max_ttl: float = 3600.0
    max_park: float = DAY
    max_deadline: float = 7 * DAY          # an owned task's deadline; workers may allow less
    min_replicas: int = 0                  # replicas an acquire or verdict must reach (WAIT)
    min_replicas_timeout_ms: int = 1000    # how long WAIT waits for them

    def __post_init__(self) -> None:
        for name in ("retention", "dlq_max_age", "max_ttl", "max_park", "max_deadline"):
            check_seconds(name, getattr(self, name))
        for name in ("dlq_max_len", "dlq_body_cap", "max_envelope_bytes", "max_result_bytes",
                     "max_prompt_bytes"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        Durability(self.min_replicas, self.min_replicas_timeout_ms)  # checks both

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The defaults, with LEASEGATE_MIN_REPLICAS and LEASEGATE_MIN_REPLICAS_TIMEOUT (ms)."""
        durability = Durability.from_env(os.environ if env is None else env)
        return cls(min_replicas=durability.replicas,
                   min_replicas_timeout_ms=durability.timeout_ms)

    @property
    def durability(self) -> Durability:
        return Durability(self.min_replicas, self.min_replicas_timeout_ms)

    @property
    def memo_ttl_ms(self) -> int:
        """A callback's first verdict is remembered as long as anything it produced lives."""
        return int(max(self.retention, self.dlq_max_age) * 1000)
