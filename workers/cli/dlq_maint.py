"""``celery dlq purge|drain|sweep|stats``: the commands over many dead letters at once, apart
from dlq.py (one letter at a time); dlq.py adds them to its group."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import click
from celery.bin.base import CeleryCommand

from .common import (
    about,
    age,
    client_for,
    confirm,
    emit_json,
    fail,
    kind_choice,
    parse_duration,
    reason_choice,
    state_choice,
    table,
    who,
)
from .letters import artifacts_of, letter_json


@click.command(cls=CeleryCommand)
@click.option("--reason", type=reason_choice(), help="only letters with this reason")
@click.option("--kind", type=kind_choice(), help="only results, or only error notices")
@click.option("--state", type=state_choice(), help="only letters in this state")
@click.option("--older-than", help="only letters older than this: 30m, 7d")
@click.option("--session", "session_key")
@click.option("--tool")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@click.pass_context
def purge(ctx: click.Context, reason: str | None, kind: str | None, state: str | None,
          older_than: str | None, session_key: str | None, tool: str | None, dry_run: bool,
          yes: bool) -> None:
    """Discard every held dead letter that matches all the filters given."""
    client = client_for(ctx)
    seconds = parse_duration(older_than, "--older-than") if older_than else None
    options: dict[str, Any] = {"reason": reason, "older_than": seconds, "kind": kind,
                               "state": state, "session_key": session_key, "tool": tool}
    try:
        matching = client.dead_letters.purge(**options, dry_run=True)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    about(ctx)
    if dry_run or not matching:
        click.echo(f"{'would purge' if matching else 'nothing to purge:'} "
                   f"{len(matching)} dead letter(s)")
        return
    confirm(f"Purge {len(matching)} dead letter(s)?", yes)
    done = client.dead_letters.purge(**options, by=who())
    click.echo(f"purged {len(done)} dead letter(s)")


@click.command(cls=CeleryCommand)
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reason", type=reason_choice(), help="only letters with this reason")
@click.option("--kind", type=kind_choice(), help="only results, or only error notices")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@click.pass_context
def drain(ctx: click.Context, to_dir: Path, reason: str | None, kind: str | None,
          dry_run: bool, yes: bool) -> None:
    """Export quarantined letters and their images to DIR, then mark them archived.

    DIR/manifest.jsonl gets one JSON line per letter and DIR/images/ the images. A letter
    whose image is not in the artifact store is not archived: it stays quarantined, is named,
    and the drain exits 1. Interrupted, it re-runs cleanly: nothing acknowledged is exported
    twice, nothing is lost. (Only quarantined letters are drained: there is no --state.)
    """
    client = client_for(ctx)
    todo = client.dead_letters.stats(kind=kind, state="quarantined").held
    about(ctx)
    note = artifacts_of(ctx).note
    if note:
        click.echo(note)
    if dry_run:
        click.echo(f"would drain up to {todo} quarantined letter(s) to {to_dir}")
        return
    confirm(f"Export and archive up to {todo} quarantined letter(s) to {to_dir}?", yes)
    from .dlq_export import drain_to

    count, kept = drain_to(client, to_dir, partial(letter_json, ctx), reason, kind, todo)
    click.echo(f"drained {count} dead letter(s) to {to_dir}")
    if kept:
        fail(f"{len(kept)} letter(s) kept quarantined, their image not in the artifact store"
             f" ({note or 'missing files'}): {', '.join(kept)}")


@click.command(cls=CeleryCommand)
@click.pass_context
def sweep(ctx: click.Context) -> None:
    """Apply retention now: letters past their max age or beyond the max count become
    counted tombstones (the gate also does this as letters arrive)."""
    done = client_for(ctx).dead_letters.sweep(limit=1_000_000)
    about(ctx)
    click.echo(f"{done} dead letter(s) expired into tombstones")


@click.command(cls=CeleryCommand)
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Index held letters by kind and state: once, after upgrading from a version without
    those indexes (until then --kind and --state do not see older letters)."""
    done = client_for(ctx).dead_letters.reindex()
    about(ctx)
    click.echo(f"{done} held dead letter(s) indexed by kind and state")


@click.command(cls=CeleryCommand)
@click.option("--kind", type=kind_choice(), help="count only results, or only error notices")
@click.option("--state", type=state_choice(), help="count only letters in this state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx: click.Context, kind: str | None, state: str | None, as_json: bool) -> None:
    """Counts by reason, kind, tool and state; the oldest held letter's age."""
    client = client_for(ctx)
    s = client.dead_letters.stats(kind=kind, state=state)
    data = {"held": s.held, "by_reason": s.by_reason, "by_tool": s.by_tool,
            "by_kind": s.by_kind, "by_state": s.by_state, "oldest_age_seconds": s.oldest_age,
            "counters": s.counters}
    if as_json:
        emit_json(data)
        return
    about(ctx)
    only = " ".join(f"{k}={v}" for k, v in s.filters.items())
    click.echo(f"held{' ' + only if only else ''}: {s.held}   oldest: {age(s.oldest_age)}")
    for title, counts in (("reason", s.by_reason), ("kind", s.by_kind), ("tool", s.by_tool),
                          ("state", s.by_state)):
        if counts:
            click.echo(table([[k, str(v)] for k, v in sorted(counts.items())],
                             [title.upper(), "COUNT"]))
