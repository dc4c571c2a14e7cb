"""``celery -A APP runs ...``: runs, their leases and inboxes, and an audit of every inbox.

Runs are found with SCAN over run records (an operator's call, not a hot path): no index is
written on the delivery path for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from celery.bin.base import CeleryCommand

from .common import Group, LazyChoice, about, age, client_for, emit_json, fail, table

if TYPE_CHECKING:
    from ...broker import Client, Run
    from ...ownership import RunStatus



def status_json(status: RunStatus, now: float) -> dict[str, Any]:
    return {"session_key": status.session_key, "run_id": status.run_id,
            "state": status.state.value, "fence": status.fence,
            "expires_at": status.expires_at, "outcome": status.outcome,
            "created_at": status.created_at, "ended_at": status.ended_at,
            "superseded_by": status.superseded_by,
            "age_seconds": None if status.created_at is None else now - status.created_at}



def run_states() -> list[str]:
    """The states a run can be listed by: RunState's, but 'unknown' (no record to list)."""
    from ...ownership import RunState

    return [state.value for state in RunState if state is not RunState.UNKNOWN]


@click.group(name="runs", cls=Group)
def runs() -> None:
    """Runs of session keys: leases, fences, inboxes."""


def _position(status: RunStatus) -> tuple[int, str]:
    """Where a run sorts (newest first): its start in ms, then its id for equal starts."""
    return round((status.created_at or 0) * 1000), status.run_id


def _after(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    ms, _, run_id = cursor.partition(":")
    if not ms.isdigit() or not run_id:
        raise click.BadParameter(f"{cursor!r} is not a cursor this listing printed",
                                 param_hint="--cursor")
    return int(ms), run_id


@runs.command(name="ls", cls=CeleryCommand)
@click.option("--state", type=LazyChoice(run_states))
@click.option("--session", "session_key")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="continue a listing from its printed cursor")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls(ctx: click.Context, state: str | None, session_key: str | None, limit: int,
       cursor: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    after = _after(cursor)
    client = client_for(ctx)
    now = client.server_time_ms() / 1000
    found = [client.registry.status(sk, rid) for sk, rid in client.registry.runs(session_key)]
    found = [s for s in found if (state is None or s.state.value == state)
             and (after is None or _position(s) < after)]
    found.sort(key=_position, reverse=True)
    page, more = found[:limit], len(found) > limit
    nxt = "{}:{}".format(*_position(page[-1])) if more else None
    if as_json:
        emit_json({"runs": [status_json(s, now) for s in page], "cursor": nxt})
        return
    about(ctx)
    if not page:
        click.echo("no runs")
        return
    found = page
    click.echo(table([[s.run_id, s.session_key, str(s.fence), s.state.value,
                       s.outcome or "-", age(now - (s.created_at or now))] for s in found],
                     ["RUN", "SESSION", "FENCE", "STATE", "OUTCOME", "STARTED"]))
    if nxt:
        click.echo(f"more: --cursor {nxt}")


def _attach(ctx: click.Context, client: Client, run_id: str, session_key: str | None) -> Run:
    matches = list(client.registry.runs(session_key, run_id))
    if not matches:
        fail(f"no run {run_id}" + (f" of session {session_key!r}" if session_key else ""))
    if len(matches) > 1:
        raise click.UsageError(f"run id {run_id} exists in several sessions: pass --session")
    return client.attach(*matches[0])


@runs.command(cls=CeleryCommand)
@click.argument("run_id")
@click.option("--session", "session_key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, run_id: str, session_key: str | None, as_json: bool) -> None:
    """A run's lease, fence, inbox, pending callbacks and dead letters."""
    client = client_for(ctx)
    run = _attach(ctx, client, run_id, session_key)
    now = client.server_time_ms() / 1000
    status = run.status()
    entries = run.inbox.entries()
    pending = run.pending()
    letters = [x for x in client.dead_letters.list(session_key=run.session_key,
                                                   limit=1000).letters if x.run_id == run_id]
    if as_json:
        emit_json({"run": status_json(status, now),
                   "inbox": [{"seq": e.seq, "id": e.id, "role": e.role, "kind": e.kind,
                              "callback_id": e.callback_id, "provenance": e.provenance,
                              "payload": e.payload,
                              "artifacts": [a.to_dict() for a in e.artifacts]}
                             for e in entries],
                   "pending": pending,
                   "dead_letters": [{"id": x.id, "reason": x.reason, "state": x.state,
                                     "callback_id": x.callback_id} for x in letters]})
        return
    about(ctx)
    click.echo(f"run {run.run_id} of {run.session_key}: {status.state.value}, "
               f"fence {status.fence}, started {age(now - (status.created_at or now))}"
               + (f", outcome {status.outcome}" if status.outcome else "")
               + (f", superseded by {status.superseded_by}" if status.superseded_by else ""))
    click.echo("inbox:")
    for e in entries:
        click.echo(f"  {e.seq:>3}  {e.role:<4} {e.kind:<9} {e.callback_id or ''}")
    click.echo(f"pending: {', '.join(f'{cb} ({tool})' for cb, tool in pending.items()) or '-'}")
    click.echo("dead letters: " + (", ".join(f"{x.id} ({x.reason})" for x in letters) or "-"))


@runs.command(cls=CeleryCommand)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit(ctx: click.Context, as_json: bool) -> None:
    """Check every inbox: entry 1 is its prompt, and nothing in it belongs to another run."""
    client = client_for(ctx)
    problems: list[dict[str, Any]] = []
    vanished: list[dict[str, str]] = []
    checked = 0
    for sk, rid in client.registry.runs():
        try:
            run = client.attach(sk, rid)
        except LookupError:  # expired between the SCAN and this read: nothing left to audit
            vanished.append({"session_key": sk, "run_id": rid})
            continue
        entries = run.inbox.entries()
        checked += 1
        if not entries:
            continue  # its inbox expired with the run's retention
        first = entries[0]
        if (first.seq, first.role, first.kind) != (1, "user", "prompt"):
            problems.append({"run_id": rid, "session_key": sk, "seq": first.seq,
                             "problem": f"entry 1 is {first.role}/{first.kind}, not the prompt"})
        for e in entries[1:]:
            if e.role != "tool":
                problems.append({"run_id": rid, "session_key": sk, "seq": e.seq,
                                 "problem": f"role={e.role} after entry 1"})
            if e.provenance.get("fence") != run.fence:
                problems.append({"run_id": rid, "session_key": sk, "seq": e.seq,
                                 "problem": f"fence {e.provenance.get('fence')} is not the "
                                            f"run's fence {run.fence}"})
    if as_json:
        emit_json({"runs_checked": checked, "runs_vanished": vanished, "problems": problems})
    else:
        about(ctx)
        for p in problems:
            click.echo(f"PROBLEM run {p['run_id']} ({p['session_key']}) entry {p['seq']}: "
                       f"{p['problem']}")
        gone = f" ({len(vanished)} expired while auditing)" if vanished else ""
        click.echo(f"audited {checked} run(s){gone}: {len(problems)} problem(s)")
    if problems:
        raise click.exceptions.Exit(1)
