"""Merging the shards' pages of dead letters into one page, newest first (pure functions).

Every shard answers for its own letters; a position orders letters across shards: a stream id
``<ms>-<seq>`` by (ms, seq) as numbers, an index row by (score, member) with members of one
score in descending byte order, as Redis sorts them. A shard that stopped before it had seen
all its letters (a walk out of budget) has a *stop position*: it knows nothing older, so a
merged page never reaches past the newest such position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Row = tuple[int, str]   # an index row: (score, member); tuples order rows oldest first


def stream_position(letter_id: str) -> tuple[int, int]:
    """A stream id as numbers: ids of different shards compare like ids of one stream."""
    ms, _, seq = letter_id.partition("-")
    return int(ms), int(seq or 0)


def newest_ids(pages: Iterable[Sequence[str]], limit: int) -> tuple[list[str], str | None]:
    """Stream pages of every shard (each newest first, up to ``limit + 1``) -> the newest
    ``limit`` ids and the id to continue below, if any are left."""
    ids = sorted((i for page in pages for i in page), key=stream_position, reverse=True)
    return ids[:limit], (ids[limit - 1] if len(ids) > limit else None)


def newest_rows(pages: Iterable[Sequence[Row]], limit: int) -> tuple[list[Row], Row | None]:
    """Index pages of every shard (each newest first, up to ``limit + 1``) -> the newest
    ``limit`` rows and the row to continue below, if any are left."""
    rows = sorted((row for page in pages for row in page), reverse=True)
    return rows[:limit], (rows[limit - 1] if len(rows) > limit else None)


def bounded_rows(found: Iterable[Sequence[Row]], stops: Iterable[Row], limit: int,
                 ) -> tuple[list[Row], Row | None]:
    """Walks of every shard -> a page and the row to continue below (None: nothing is left).

    ``found``: each shard's matching rows; ``stops``: where the shards that stopped early
    stopped. A page holds the newest ``limit`` rows not older than the newest stop position;
    when it is short of ``limit`` it continues below that stop position."""
    bound = max(stops, default=None)
    rows = sorted((row for rows in found for row in rows if bound is None or row >= bound),
                  reverse=True)[:limit]
    if len(rows) == limit:
        return rows, rows[-1]
    return rows, bound


def decided(found: Iterable[Sequence[Row]], frontier: Iterable[Row], limit: int) -> bool:
    """Whether ``limit`` rows are known newer than every shard still walking (its frontier
    is the last row it examined): walking further cannot change the page."""
    bound = max(frontier, default=None)
    if bound is None:
        return True
    return sum(1 for rows in found for row in rows if row >= bound) >= limit
