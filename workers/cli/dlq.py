"""``celery -A APP dlq ...``: see, replay, drop and export dead letters.

Exit codes: 0 ok, 1 not found or refused, 2 usage. ``--json`` output is documented in
docs/operating.md and stays stable for scripts.
"""

from __future__ import annotations

import base64
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryCommand

from .common import (
    Group,
    ReasonOption,
    age,
    check_reason,
    client_for,
    confirm,
    emit_json,
    fail,
    leasegate_config,
    parse_duration,
    table,
    who,
)
from .dlq_redrive import bulk_options, bulk_replay, is_bulk

if TYPE_CHECKING:
    from ...broker import Client, DeadLetter


def artifact_path(ctx: click.Context, digest: str) -> str | None:
    from ...broker import ArtifactMissing

    try:
        return leasegate_config(ctx).artifact_store().locate(digest)
    except (ArtifactMissing, OSError):
        return None


def letter_json(ctx: click.Context, letter: DeadLetter, now: float) -> dict[str, Any]:
    """The stable JSON form of one dead letter."""
    return {
        "id": letter.id, "reason": letter.reason, "state": letter.state,
        "detail": letter.detail, "session_key": letter.session_key, "run_id": letter.run_id,
        "fence": letter.fence, "owner_run_id": letter.owner_run_id,
        "owner_fence": letter.owner_fence, "tool": letter.tool, "task_id": letter.task_id,
        "callback_id": letter.callback_id, "kind": letter.kind,
        "run_state": letter.run_state, "submitted_at": letter.submitted_at,
        "completed_at": letter.completed_at, "quarantined_at": letter.quarantined_at,
        "deadline_at": letter.deadline_at,
        "age_seconds": None if letter.quarantined_at is None else now - letter.quarantined_at,
        "payload": letter.payload, "payload_truncated": letter.payload_truncated,
        "artifacts": [{**ref.to_dict(), "path": artifact_path(ctx, ref.digest)}
                      for ref in letter.artifacts],
        "raw_base64": base64.b64encode(letter.raw).decode() if letter.raw else None,
        "raw_size": letter.raw_size, "claimed_session_key": letter.claimed_session_key,
        "claimed_tool": letter.claimed_tool, "redelivered_to": letter.redelivered_to,
        "history": letter.history,
    }


def owner(letter: DeadLetter, short: bool = True) -> str:
    if not letter.run_id:
        return f"(claimed {letter.claimed_session_key})" if letter.claimed_session_key else "-"
    run_id = letter.run_id[:12] if short else letter.run_id
    return f"{letter.session_key} run {run_id} fence {letter.fence}"


def get_letter(client: Client, dlq_id: str) -> DeadLetter:
    from ...broker import LetterNotFound

    try:
        return client.dead_letters.get(dlq_id)
    except LetterNotFound:
        fail(f"no dead letter {dlq_id}")
        raise  # unreachable: fail() exits


@click.group(name="dlq", cls=Group)
def dlq() -> None:
    """Dead letters: callbacks whose run was gone, with the reason and the history."""


@dlq.command(name="ls", cls=CeleryCommand)
@click.option("--reason", cls=ReasonOption)
@click.option("--session", "session_key", help="only this session key")
@click.option("--tool", help="only this tool")
@click.option("--since", help="only letters younger than this: 90s, 30m, 2h, 7d")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="continue a listing from its printed cursor")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ls(ctx: click.Context, reason: str | None, session_key: str | None, tool: str | None,
       since: str | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """List held dead letters, newest first."""
    client = client_for(ctx)
    newer_than = parse_duration(since, "--since") if since else None
    try:
        page = client.dead_letters.list(reason=reason, session_key=session_key, tool=tool,
                                        newer_than=newer_than, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    now = client.server_time_ms() / 1000
    if as_json:
        emit_json({"letters": [letter_json(ctx, x, now) for x in page.letters],
                   "cursor": page.cursor})
        return
    if not page.letters:
        click.echo("no dead letters")
        return
    rows = [[x.id, age(None if x.quarantined_at is None else now - x.quarantined_at),
             x.reason, x.tool or "-", x.state, owner(x)] for x in page.letters]
    click.echo(table(rows, ["ID", "QUARANTINED", "REASON", "TOOL", "STATE", "OWNING RUN"]))
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
    for key in ("id", "reason", "detail", "state", "tool", "callback_id", "task_id", "kind"):
        click.echo(f"{key + ':':<16}{data[key] if data[key] is not None else '-'}")
    click.echo(f"{'owning run:':<16}{owner(letter, short=False)}")
    if letter.owner_run_id:
        click.echo(f"{'owner then:':<16}run {letter.owner_run_id} fence {letter.owner_fence}")
    click.echo(f"{'quarantined:':<16}{age(data['age_seconds'])}")
    for ref in data["artifacts"]:
        click.echo(f"{'image:':<16}{ref['path'] or '(not in the store)'} "
                   f"({ref['media_type']}, {ref['size']} bytes)")
    if letter.raw:
        click.echo(f"{'raw bytes:':<16}{letter.raw_size} ({letter.raw[:48]!r}...)")
    if letter.payload is not None:
        click.echo(f"{'payload:':<16}{json.dumps(letter.payload, default=str)[:300]}")
    click.echo("history:")
    for step in letter.history:
        click.echo(f"  {step.get('state', '?'):<12} by {step.get('by', '?')}"
                   f"  {step.get('note') or ''}")


@dlq.command(cls=CeleryCommand)
@click.argument("dlq_id", required=False)
@click.option("--run", "run_id", help="the LIVE or PARKED run to replay into")
@bulk_options
@click.pass_context
def replay(ctx: click.Context, /, dlq_id: str | None, run_id: str | None, **bulk: Any) -> None:
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
        result = client.dead_letters.replay(dlq_id, to=target, by=who())
    except ReplayRefused as exc:
        fail(str(exc))
        return
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
    if dry_run:
        click.echo(f"would discard {dlq_id} ({letter.reason}, {owner(letter)})")
        return
    confirm(f"Discard dead letter {dlq_id} ({letter.reason})?", yes)
    try:
        client.dead_letters.discard(dlq_id, by=who())
    except LetterGone as exc:
        fail(str(exc))
    click.echo(f"discarded {dlq_id}")


@dlq.command(cls=CeleryCommand)
@click.option("--reason")
@click.option("--older-than", help="only letters older than this: 30m, 7d")
@click.option("--session", "session_key")
@click.option("--tool")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@click.pass_context
def purge(ctx: click.Context, reason: str | None, older_than: str | None,
          session_key: str | None, tool: str | None, dry_run: bool, yes: bool) -> None:
    """Discard every held dead letter that matches all the filters given."""
    client = client_for(ctx)
    seconds = parse_duration(older_than, "--older-than") if older_than else None
    options: dict[str, Any] = {"reason": reason, "older_than": seconds,
                               "session_key": session_key, "tool": tool}
    try:
        matching = client.dead_letters.purge(**options, dry_run=True)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if dry_run or not matching:
        click.echo(f"{'would purge' if matching else 'nothing to purge:'} "
                   f"{len(matching)} dead letter(s)")
        return
    confirm(f"Purge {len(matching)} dead letter(s)?", yes)
    done = client.dead_letters.purge(**options, by=who())
    click.echo(f"purged {len(done)} dead letter(s)")


@dlq.command(cls=CeleryCommand)
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--reason")
@click.option("--dry-run", is_flag=True)
@click.option("--yes", is_flag=True)
@click.pass_context
def drain(ctx: click.Context, to_dir: Path, reason: str | None, dry_run: bool,
          yes: bool) -> None:
    """Export quarantined letters and their images to DIR, then mark them archived.

    DIR/manifest.jsonl gets one JSON line per letter and DIR/images/ the images. Interrupted,
    it re-runs cleanly: nothing acknowledged is exported twice, nothing is lost.
    """
    check_reason(reason)
    client = client_for(ctx)
    stats = client.dead_letters.stats()
    todo = stats.by_state.get("quarantined", 0)
    if dry_run:
        click.echo(f"would drain up to {todo} quarantined letter(s) to {to_dir}")
        return
    confirm(f"Export and archive up to {todo} quarantined letter(s) to {to_dir}?", yes)
    from .dlq_export import drain_to

    count = drain_to(client, to_dir, partial(letter_json, ctx), reason, todo)
    click.echo(f"drained {count} dead letter(s) to {to_dir}")


@dlq.command(cls=CeleryCommand)
@click.pass_context
def sweep(ctx: click.Context) -> None:
    """Apply retention now: letters past their max age or beyond the max count become
    counted tombstones (the gate also does this as letters arrive)."""
    done = client_for(ctx).dead_letters.sweep(limit=1_000_000)
    click.echo(f"{done} dead letter(s) expired into tombstones")


@dlq.command(cls=CeleryCommand)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Counts by reason, tool and state; the oldest held letter's age."""
    client = client_for(ctx)
    s = client.dead_letters.stats()
    data = {"held": s.held, "by_reason": s.by_reason, "by_tool": s.by_tool,
            "by_state": s.by_state, "oldest_age_seconds": s.oldest_age,
            "counters": s.counters}
    if as_json:
        emit_json(data)
        return
    click.echo(f"held: {s.held}   oldest: {age(s.oldest_age)}")
    for title, counts in (("reason", s.by_reason), ("tool", s.by_tool), ("state", s.by_state)):
        if counts:
            click.echo(table([[k, str(v)] for k, v in sorted(counts.items())],
                             [title.upper(), "COUNT"]))
