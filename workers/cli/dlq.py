"""``celery -A APP dlq ...``: see, replay and drop dead letters one at a time (``ls``,
``show``, ``replay``, ``discard``); dlq_maint.py adds the commands over many at once.

Exit codes: 0 ok, 1 not found or refused, 2 usage. ``--json`` output is documented in
docs/operating.md and stays stable for scripts.
"""

from __future__ import annotations

from typing import Any

import click
from celery.bin.base import CeleryCommand

from .common import (
    Group,
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
from .dlq_redrive import bulk_options, bulk_replay, is_bulk
from .letters import artifacts_of, get_letter, letter_json, owner, show_letter

__all__ = ["dlq", "get_letter", "letter_json", "owner"]


@click.group(name="dlq", cls=Group)
def dlq() -> None:
    """Dead letters: callbacks whose run was gone, with the reason and the history."""


@dlq.command(name="ls", cls=CeleryCommand)
@click.option("--reason", type=reason_choice(), help="only letters with this reason")
@click.option("--kind", type=kind_choice(), help="only results, or only error notices")
@click.option("--state", type=state_choice(), help="only letters in this state")
@click.option("--session", "session_key", help="only this session key")
@click.option("--tool", help="only this tool")
@click.option("--since", help="only letters younger than this: 90s, 30m, 2h, 7d")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="continue a listing from its printed cursor")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ls(ctx: click.Context, reason: str | None, kind: str | None, state: str | None,
       session_key: str | None, tool: str | None, since: str | None, limit: int,
       cursor: str | None, as_json: bool) -> None:
    """List held dead letters, newest first."""
    client = client_for(ctx)
    newer_than = parse_duration(since, "--since") if since else None
    try:
        page = client.dead_letters.list(reason=reason, session_key=session_key, tool=tool,
                                        newer_than=newer_than, limit=limit, cursor=cursor,
                                        kind=kind, state=state)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    now = client.server_time_ms() / 1000
    if as_json:
        emit_json({"letters": [letter_json(ctx, x, now) for x in page.letters],
                   "cursor": page.cursor})
        return
    about(ctx)
    if not page.letters:
        click.echo("no dead letters" + (" match these filters" if any(
            (reason, kind, state, session_key, tool, since, cursor)) else ""))
        return
    rows = [[x.id, age(None if x.quarantined_at is None else now - x.quarantined_at),
             x.reason, x.kind or "-", x.tool or "-", x.state, owner(x)] for x in page.letters]
    click.echo(table(rows, ["ID", "QUARANTINED", "REASON", "KIND", "TOOL", "STATE",
                            "OWNING RUN"]))
    note = artifacts_of(ctx).note
    if note and any(x.artifacts for x in page.letters):
        click.echo(note)
    if page.cursor:
        click.echo(f"more: --cursor {page.cursor}")


@dlq.command(cls=CeleryCommand)
@click.argument("dlq_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, dlq_id: str, as_json: bool) -> None:
    """Everything about one dead letter: why, whose, what since, where the image is."""
    client = client_for(ctx)
    letter = get_letter(client, dlq_id)
    data = letter_json(ctx, letter, client.server_time_ms() / 1000)
    if as_json:
        emit_json(data)
        return
    about(ctx)
    show_letter(ctx, letter, data, client.server_time_ms() / 1000)


@dlq.command(cls=CeleryCommand)
@click.argument("dlq_id", required=False)
@click.option("--run", "run_id", help="the LIVE or PARKED run to replay into")
@click.option("--force", is_flag=True,
              help="also replay a kind=error letter (an error notice, not a result)")
@bulk_options
@click.pass_context
def replay(ctx: click.Context, /, dlq_id: str | None, run_id: str | None, force: bool,
           **bulk: Any) -> None:
    """Append a dead letter to a live run's inbox as role=tool, kind=recovered; or, with
    --session and no DLQ_ID, every quarantined letter of that session (a bulk redrive)."""
    from ...broker import ReplayRefused

    if dlq_id is None or is_bulk(bulk):
        bulk_replay(ctx, dlq_id, run_id, **bulk)
        return
    if run_id is None:
        raise click.UsageError("replay DLQ_ID needs --run RUN_ID")

    client = client_for(ctx)
    letter = get_letter(client, dlq_id)
    if not letter.session_key:
        fail(f"dead letter {dlq_id} ({letter.reason}) names no trusted session: "
             "nothing to replay")
    found = sorted(client.registry.runs(run_id=run_id),
                   key=lambda m: m[0] != letter.session_key)
    if not found:
        fail(f"no run {run_id}")
    target = _TargetRun(*found[0])  # the letter's own session first: a run id is unique there
    try:
        result = client.dead_letters.replay(dlq_id, to=target, by=who(), force=force)
    except ReplayRefused as exc:
        fail(str(exc))
        return
    about(ctx)
    click.echo(f"replayed {dlq_id} into run {run_id} as inbox entry {result.seq}"
               + (" (it was parked: resume signal left)" if result.resumed else ""))


class _TargetRun:
    def __init__(self, session_key: str, run_id: str) -> None:
        self.session_key, self.run_id = session_key, run_id


@dlq.command(cls=CeleryCommand)
@click.argument("dlq_id")
@click.option("--yes", is_flag=True, help="do not ask")
@click.option("--dry-run", is_flag=True, help="say what would happen, change nothing")
@click.pass_context
def discard(ctx: click.Context, dlq_id: str, yes: bool, dry_run: bool) -> None:
    """Drop a dead letter's payload; its record and history stay as a tombstone."""
    from ...broker import LetterGone

    client = client_for(ctx)
    letter = get_letter(client, dlq_id)
    if letter.tombstone:
        fail(f"dead letter {dlq_id} is already {letter.state}")
    about(ctx)
    if dry_run:
        click.echo(f"would discard {dlq_id} ({letter.reason}, {owner(letter)})")
        return
    confirm(f"Discard dead letter {dlq_id} ({letter.reason})?", yes)
    try:
        client.dead_letters.discard(dlq_id, by=who())
    except LetterGone as exc:
        fail(str(exc))
    click.echo(f"discarded {dlq_id}")


from .dlq_maint import drain, purge, reindex, stats, sweep  # noqa: E402 - join the group here

for _command in (purge, drain, sweep, stats, reindex):
    dlq.add_command(_command)
