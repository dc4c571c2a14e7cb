"""What the ``celery dlq`` commands know about one dead letter: its stable JSON form, its
owning run in words, where its images are. The artifact store is only ever opened, never
made: a CLI run in the wrong directory must say the store is unknown, not create one there."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import fail, leasegate_config, when

if TYPE_CHECKING:
    from ...broker import Client, DeadLetter, NamespacedArtifactStore


class ArtifactAccess:
    """The namespace's artifact store if its directory exists here, else why not (``note``)."""

    def __init__(self, ctx: click.Context) -> None:
        from ...broker import NamespacedArtifactStore

        config = leasegate_config(ctx)
        self.store: NamespacedArtifactStore | None = None
        self.note = ""
        where = Path(config.artifact_dir).absolute()
        if not where.is_dir():
            unset = ("LEASEGATE_ARTIFACT_DIR is unset and the default "
                     if not os.environ.get("LEASEGATE_ARTIFACT_DIR") else
                     "LEASEGATE_ARTIFACT_DIR=")
            self.note = (f"artifact store unknown: {unset}{config.artifact_dir} does not exist "
                         "here; set LEASEGATE_ARTIFACT_DIR to the workers' artifact directory")
            return
        self.store = NamespacedArtifactStore(where, config.namespace)
        if next(self.store.digests(), None) is None and next(self.store.legacy.digests(),
                                                             None) is None:
            self.note = (f"artifact store {self.store.root} is empty: is "
                         "LEASEGATE_ARTIFACT_DIR the workers' artifact directory?")

    def path(self, digest: str) -> str | None:
        from ...broker import ArtifactMissing

        if self.store is None:
            return None
        try:
            return self.store.locate(digest)
        except (ArtifactMissing, OSError):
            return None


def artifacts_of(ctx: click.Context) -> ArtifactAccess:
    """One ArtifactAccess per command invocation (each letter asks it)."""
    found = ctx.meta.get("leasegate.artifacts")
    if found is None:
        found = ctx.meta["leasegate.artifacts"] = ArtifactAccess(ctx)
    return found


def letter_json(ctx: click.Context, letter: DeadLetter, now: float) -> dict[str, Any]:
    """The stable JSON form of one dead letter."""
    access = artifacts_of(ctx)
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
        "artifacts": [{**ref.to_dict(), "path": access.path(ref.digest)}
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


def show_letter(ctx: click.Context, letter: DeadLetter, data: dict[str, Any],
                now: float) -> None:
    """``dlq show``'s human form."""
    for key in ("id", "reason", "detail", "state", "kind", "tool", "callback_id", "task_id"):
        click.echo(f"{key + ':':<16}{data[key] if data[key] is not None else '-'}")
    click.echo(f"{'owning run:':<16}{owner(letter, short=False)}")
    if letter.owner_run_id:
        click.echo(f"{'owner then:':<16}run {letter.owner_run_id} fence {letter.owner_fence}")
    for label, at in (("submitted:", letter.submitted_at), ("completed:", letter.completed_at),
                      ("quarantined:", letter.quarantined_at), ("deadline:", letter.deadline_at)):
        if at is not None:
            click.echo(f"{label:<16}{when(at, now)}")
    note = artifacts_of(ctx).note
    for ref in data["artifacts"]:
        click.echo(f"{'image:':<16}{ref['path'] or '(not in the store)'} "
                   f"({ref['media_type']}, {ref['size']} bytes)")
    if data["artifacts"] and note:
        click.echo(f"{'':<16}{note}")
    if letter.raw:
        click.echo(f"{'raw bytes:':<16}{letter.raw_size} ({letter.raw[:48]!r}...)")
    if letter.payload is not None:
        import json

        click.echo(f"{'payload:':<16}{json.dumps(letter.payload, default=str)[:300]}")
    click.echo("history:")
    for step in letter.history:
        at = step.get("at")
        stamp = when(at, now) if isinstance(at, int | float) else "?"
        click.echo(f"  {step.get('state', '?'):<12} {stamp}  by {step.get('by', '?')}"
                   f"  {step.get('note') or ''}")
