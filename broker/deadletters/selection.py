"""Choosing dead letters by every filter an operator has: the indexed ones (reason, session
key, tool, since) through ``DeadLetters.list``, and kind and state, which no index holds,
checked on the letters each indexed page returns.

A page examines at most ``WALK_FACTOR * limit`` letters, in sub-pages that end exactly where
the returned cursor resumes, so it costs a bounded number of Redis calls at any number of
letters; a sparse filter may return fewer than ``limit`` letters (even none) with a cursor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..codes import KINDS, REASONS
from .index import HELD_STATES, MAX_LIMIT, WALK_FACTOR
from .letter import DeadLetter, Page

if TYPE_CHECKING:
    from .store import DeadLetters

class FilterError(ValueError):
    """A filter that cannot be used; ``field`` names it as ``LetterFilter`` spells it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class LetterFilter:
    """Held letters matching every given field. ``since``: quarantined at or after this epoch
    time (seconds, Redis server time)."""

    reason: str | None = None
    kind: str | None = None
    state: str | None = None
    session_key: str | None = None
    tool: str | None = None
    since: float | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("reason", REASONS), ("kind", KINDS), ("state", HELD_STATES)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise FilterError(name, f"{name} must be one of {', '.join(allowed)}; "
                                        f"got {value!r:.80}")
        for name in ("session_key", "tool"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value
                                      or len(value) > 512):
                raise FilterError(name, f"{name} must be a non-empty str of at most 512 "
                                        f"chars, got {value!r:.80}")
        since = self.since
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)
                                  or not math.isfinite(since) or since < 0):
            raise FilterError("since", f"since must be an epoch time in seconds >= 0, "
                                       f"got {since!r:.80}")

    def matches(self, letter: DeadLetter) -> bool:
        """The checks no index makes (the indexed ones hold by construction)."""
        return ((self.kind is None or letter.kind == self.kind)
                and (self.state is None or letter.state == self.state))

    def as_dict(self) -> dict[str, str | float | None]:
        return {"reason": self.reason, "kind": self.kind, "state": self.state,
                "session_key": self.session_key, "tool": self.tool, "since": self.since}


def select_letters(letters: DeadLetters, where: LetterFilter, limit: int = 50,
           cursor: str | None = None) -> Page:
    """One page of letters matching ``where``, newest first (see the module's docstring)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise FilterError("limit", f"limit must be an int in 1..{MAX_LIMIT}, got {limit!r}")
    found: list[DeadLetter] = []
    budget = WALK_FACTOR * limit
    while budget > 0:
        # a sub-page never holds more than the letters still wanted: the cursor after it is
        # then exactly where this page stops
        want = min(limit - len(found), budget)
        try:
            page = letters.list(reason=where.reason, session_key=where.session_key,
                                tool=where.tool, since=where.since, limit=want, cursor=cursor)
        except ValueError as exc:
            raise FilterError("cursor" if "cursor" in str(exc) else "filter", str(exc)) from None
        budget -= want
        found += [letter for letter in page.letters if where.matches(letter)]
        cursor = page.cursor
        if cursor is None or len(found) == limit:
            break
    return Page(found, cursor)


def matching_letters(letters: DeadLetters, where: LetterFilter,
             batch: int = MAX_LIMIT) -> Iterator[DeadLetter]:
    """Every letter matching ``where``, newest first, a page at a time."""
    cursor: str | None = None
    while True:
        page = select_letters(letters, where, batch, cursor)
        yield from page.letters
        cursor = page.cursor
        if cursor is None:
            return
