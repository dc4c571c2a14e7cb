"""``celery dlq replay --session S --to-current [--reason R] [--kind K] [--dry-run] [--rate N]``:
the bulk path of ``dlq replay``, on the redrive engine the console uses (``broker.Redrives``),
so each letter still goes through the one replay script: into a live run of its own session,
once; a letter whose run is not live stays a dead letter and is named by reason."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .common import EXIT_NOT_FOUND, ReasonOption, client_for, fail, parse_duration, who

if TYPE_CHECKING:
    from ...broker import RedriveProgress

BULK = ("session_key", "to_current", "reason", "kind", "tool", "since", "dry_run", "rate")


def bulk_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a bulk replay, added to ``dlq replay``."""
    for option in reversed((
        click.option("--session", "session_key", help="bulk: every quarantined letter of "
                     "this session key"),
        click.option("--to-current", is_flag=True, help="bulk: into the current run of each "
                     "letter's session (else --run)"),
        click.option("--reason", cls=ReasonOption),
        click.option("--kind", type=click.Choice(["result", "error"]),
                     help="bulk: only letters of this kind"),
        click.option("--tool", help="bulk: only letters of this tool"),
        click.option("--since", help="bulk: only letters younger than this: 90s, 30m, 2h"),
        click.option("--dry-run", is_flag=True, help="bulk: count, change nothing"),
        click.option("--rate", type=click.FloatRange(0, 10_000, min_open=True),
                     help="bulk: at most this many letters per second"),
    )):
        command = option(command)
    return command


def is_bulk(bulk: dict[str, Any]) -> bool:
    """Any bulk option given."""
    return any(bulk.get(name) not in (None, False) for name in BULK)


def bulk_replay(ctx: click.Context, dlq_id: str | None, run_id: str | None,
                **bulk: Any) -> None:
    """Count the matching letters, then (unless --dry-run) replay them with a progress bar.
    Exit 1 if any letter was refused: it is still a dead letter, and the reasons are named."""
    from ...broker import FilterError, LetterFilter, RedriveRequest, Redrives

    if dlq_id is not None:
        raise click.UsageError("give one DLQ_ID, or bulk options (--session ...) without one")
    if not bulk["session_key"]:
        raise click.UsageError("a bulk replay needs --session SESSION_KEY")
    force = bool(ctx.params.get("force"))  # dlq replay's own --force, when it has one
    client = client_for(ctx)
    since = bulk["since"]
    try:
        where = LetterFilter(
            reason=bulk["reason"], kind=bulk["kind"], state="quarantined",
            session_key=bulk["session_key"], tool=bulk["tool"],
            since=None if since is None else
            max(0.0, client.server_time_ms() / 1000 - parse_duration(since, "--since")))
        request = RedriveRequest(where=where, to_current=bulk["to_current"], run_id=run_id,
                                 dry_run=bulk["dry_run"], rate=bulk["rate"], force=force)
        redrives = Redrives(client.dead_letters)
        count = redrives.run(RedriveRequest(where=where, dry_run=True, force=force), who())
    except FilterError as exc:
        option = {"session_key": "--session", "to_current": "--to-current",
                  "run_id": "--run"}.get(exc.field, f"--{exc.field.replace('_', '-')}")
        raise click.BadParameter(str(exc), param_hint=option) from None
    skipped = (f"; {count.skipped} kind=error letter(s) left alone (--force replays them)"
               if count.skipped else "")
    if bulk["dry_run"]:
        click.echo(f"would replay {count.total} quarantined letter(s) of "
                   f"{bulk['session_key']}{skipped}")
        return
    if count.total == 0:
        click.echo(f"nothing to replay{skipped}")
        return
    with click.progressbar(length=count.total, label="replaying", show_pos=True,
                           file=sys.stderr) as bar:
        seen = [0]

        def advance(progress: RedriveProgress) -> None:
            bar.update(progress.done - seen[0])
            seen[0] = progress.done

        done = redrives.run(request, who(), on_progress=advance)
    report(done, skipped)


def report(done: RedriveProgress, skipped: str) -> None:
    target = "the current run of its session" if done.request.get("to_current") else \
        f"run {done.request.get('run_id')}"
    click.echo(f"replayed {done.replayed} of {done.total} letter(s) into {target} "
               f"(redrive {done.id}){skipped}")
    if done.refused:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(done.refusals.items()))
        click.echo(f"Error: {done.refused} letter(s) refused and still dead letters "
                   f"({reasons})", err=True)
    if done.state != "done":
        fail(f"redrive {done.id} {done.state} after {done.done} of {done.total}"
             + (f": {done.error}" if done.error else ""))
    if done.refused:
        raise click.exceptions.Exit(EXIT_NOT_FOUND)
