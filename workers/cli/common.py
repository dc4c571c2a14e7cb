"""What the ``celery dlq`` and ``celery runs`` commands share: the client, durations, ages,
tables, confirmation. Imports stay inside functions: every ``celery`` invocation loads this."""

from __future__ import annotations

import getpass
import json
import re
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ...broker import Client
    from ..config import WorkerConfig

EXIT_NOT_FOUND = 1  # not found or refused; click's usage errors exit 2
UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|min|m|h|d|w)")


class Group(click.Group):
    """A command group whose commands end in one clear line when Redis is away."""

    def invoke(self, ctx: click.Context) -> Any:
        from ...ownership import RegistryUnavailable

        try:
            return super().invoke(ctx)
        except RegistryUnavailable as exc:
            fail(str(exc))


class ReasonOption(click.Option):
    """``--reason``, whose help lists the dead-letter reasons: read from the broker only when
    help is shown, because every ``celery`` invocation imports this module."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        from ...broker import REASONS

        self.help = "only letters with this reason: " + ", ".join(REASONS)
        return super().get_help_record(ctx)


class LazyChoice(click.Choice):  # type: ignore[type-arg]
    """A Choice whose values are loaded when first needed, not when the module is imported:
    every ``celery`` invocation imports the CLI modules, and most never use these."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return tuple(self._load())

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass  # click's own __init__ sets it; the loader is the source


def _reasons() -> Sequence[str]:
    from ...broker import REASONS

    return REASONS


def _kinds() -> Sequence[str]:
    from ...broker import KINDS

    return KINDS


def _held_states() -> Sequence[str]:
    from ...broker import HELD_STATES

    return HELD_STATES


def reason_choice() -> LazyChoice:
    """``--reason``: validated and completed from the broker's reasons."""
    return LazyChoice(_reasons)


def kind_choice() -> LazyChoice:
    """``--kind``: result or error (what a worker delivered)."""
    return LazyChoice(_kinds)


def state_choice() -> LazyChoice:
    """``--state``: the held states (tombstones are not listed)."""
    return LazyChoice(_held_states)


def redacted(url: str) -> str:
    """A Redis URL without its password, fit to print."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***" if parts.username else ":***"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def source(ctx: click.Context) -> str:
    """Which Redis and namespace a command read: named in every human-readable output, so a
    wrong LEASEGATE_REDIS_URL or LEASEGATE_NAMESPACE is seen, not mistaken for 'nothing'."""
    config = leasegate_config(ctx)
    return f"redis {redacted(config.redis_url)}, namespace {config.namespace}"


def about(ctx: click.Context) -> None:
    """The first line of a human-readable output: the Redis and namespace read."""
    click.echo(f"({source(ctx)})")


def when(at: float, now: float) -> str:
    """An instant as ISO 8601 UTC beside its age: '2026-11-29T18:25:52Z (12 s ago)'."""
    from datetime import UTC, datetime

    iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if at > now + 1:
        return f"{iso} (in {age(at - now).removesuffix(' ago')})"
    return f"{iso} ({age(now - at)})"


def check_reason(reason: str | None) -> None:
    """A clear usage error for an unknown reason, before any Redis call."""
    from ...broker import REASONS

    if reason is not None and reason not in REASONS:
        raise click.UsageError(f"--reason must be one of {', '.join(REASONS)}")


def parse_duration(text: str, option: str) -> float:
    """'90s', '30m', '2h', '7d', '1d12h' -> seconds."""
    parts = DURATION.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower().replace(" ", ""):
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m, 2h, 7d",
                                 param_hint=option)
    return sum(float(n) * UNITS[u] for n, u in parts)


def age(seconds: float | None) -> str:
    """An age in words: 'just now', '42 s ago', '3 min ago', '5 h ago', '2 days ago'."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "just now"
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // size)} {unit} ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False))
                     .rstrip() for line in lines)


def who() -> str:
    """Recorded in dead-letter history for every operator action."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (celery cli)"


def leasegate_config(ctx: click.Context) -> WorkerConfig:
    app = ctx.obj.app
    config = getattr(app, "leasegate_config", None)
    if config is None:
        raise click.UsageError(f"the app {app.main!r} is not leasegate-aware: "
                               "call leasegate.workers.install(app) in it")
    return config  # type: ignore[no-any-return]


def client_for(ctx: click.Context) -> Client:
    """A broker client on the app's Redis. The CLI signs nothing, so no secret is needed."""
    from ...broker import Client
    from ...ownership import connect
    from ..config import INSECURE_DEV_SECRET

    config = leasegate_config(ctx)
    return Client(connect(config.redis_url), config.namespace,
                  secret=config.secret or INSECURE_DEV_SECRET)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def confirm(question: str, yes: bool) -> None:
    """Ask unless --yes; no answer (no terminal, end of input) is a no: exit 1."""
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False)
    except click.Abort:
        agreed = False
    if not agreed:
        click.echo("nothing changed (pass --yes to skip this question)", err=True)
        raise click.exceptions.Exit(EXIT_NOT_FOUND)


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    ctx = click.get_current_context(silent=True)
    if ctx is not None and getattr(getattr(ctx.find_root().obj, "app", None),
                                   "leasegate_config", None) is not None:
        click.echo(f"({source(ctx)})", err=True)
    raise click.exceptions.Exit(EXIT_NOT_FOUND)
