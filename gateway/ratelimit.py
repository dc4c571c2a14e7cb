"""Rate limits per token: a token bucket in Redis (``commands/take-1.lua``, on server time),
so any number of ``serve`` processes behind one address count one token's requests together.

``LEASEGATE_RATE_LIMIT`` requests per second per token (0: off), ``LEASEGATE_RATE_BURST`` the
bucket's size. Over the limit: 429 ``rate_limited`` with Retry-After.

A refusal says how long the bucket stays empty; until then this process refuses the token
from memory, with no Redis call: the bucket only refills with time (other processes can only
take from it), so each of those answers is the one Redis would give. A flood thus reaches
Redis about twice per refill interval (1/rate) per process, whatever its request rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from ..ownership import Keys, Scripts, unavailable_as_error
from ..workers import ConfigError

DEFAULT_RATE = 50.0   # requests per second per token: generous for a runtime, fatal to a flood
DEFAULT_BURST = 100


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class RateLimit:
    rate: float = DEFAULT_RATE  # requests per second per token; 0: no limit
    burst: int = DEFAULT_BURST

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RateLimit:
        rate = _number(env, "LEASEGATE_RATE_LIMIT", DEFAULT_RATE, 0)
        burst = _number(env, "LEASEGATE_RATE_BURST", DEFAULT_BURST, 1)
        if burst != int(burst):
            raise ConfigError(f"LEASEGATE_RATE_BURST must be a whole number, got {burst:g}")
        return cls(rate, int(burst))

    @property
    def enabled(self) -> bool:
        return self.rate > 0


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    remaining: int
    retry_after: float  # seconds; 0 when admitted


class RateLimiter:
    """One bucket per token name (never the token itself) in the gateway's namespace."""

    def __init__(self, client: redis.Redis, namespace: str, limit: RateLimit) -> None:
        self.limit = limit
        self.keys = Keys(namespace)
        self.scripts = Scripts(client, Path(__file__).parent / "commands") \
            if limit.enabled else None
        self.empty_until: dict[str, float] = {}  # token name -> monotonic end of its refusal
        self.refused_locally = 0  # refusals answered from memory (no Redis call)

    def take(self, token_name: str) -> Verdict:
        if self.scripts is None:
            return Verdict(True, self.limit.burst, 0.0)
        asked = time.monotonic()  # before the call: the window ends no later than Redis's
        until = self.empty_until.get(token_name, 0.0)
        if asked < until:
            self.refused_locally += 1
            return Verdict(False, 0, until - asked)
        with unavailable_as_error():
            admitted, remaining, wait_ms = self.scripts(
                "take", [self.keys.global_key(f"ratelimit:{token_name}")],
                [repr(self.limit.rate), self.limit.burst])
        verdict = Verdict(bool(admitted), int(remaining), int(wait_ms) / 1000)
        if not verdict.admitted:
            self.empty_until[token_name] = asked + verdict.retry_after
        return verdict
