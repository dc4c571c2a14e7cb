"""Durations in seconds, checked in one place with one wording of every refusal.

Durations reach leasegate from callers (ttl, park deadline, task deadline, retention, ...);
each layer used to check them with its own copy of the same rules. These two helpers are the
rules: a real number (not a bool), > 0 (or >= 0), at most a limit; the messages name the field
and the limit.
"""

from __future__ import annotations

import math


def _checked(field: str, value: object, limit: float, positive: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a number of seconds, not {type(value).__name__}")
    # 'not value > 0' rather than 'value <= 0': NaN must fail too
    if not (value > 0 if positive else value >= 0):
        raise ValueError(f"{field} must be {'> 0' if positive else '>= 0'} seconds, "
                         f"got {value}")
    if value > limit:
        raise ValueError(f"{field} is {value} s; the configured maximum is {limit} s")
    return value


def check_seconds(field: str, value: object, limit: float = math.inf, *,
                  positive: bool = True) -> float:
    """``value`` as a float if it is a number of seconds > 0 (>= 0 unless ``positive``) and
    at most ``limit``; else TypeError (not a number) or ValueError, naming ``field``.

    NaN is refused (it is neither > 0 nor >= 0); infinity passes unless ``limit`` is finite.
    """
    return float(_checked(field, value, limit, positive))


def to_ms(field: str, value: object, limit: float = math.inf, *,
          positive: bool = True) -> int:
    """``check_seconds`` in whole milliseconds, rounded; a positive duration is at least 1 ms
    (the Lua commands read 0 ms as 'the run's own ttl')."""
    ms = round(_checked(field, value, limit, positive) * 1000)
    return max(1, ms) if positive else ms
