"""``celery -A APP leasegate doctor``: one command that checks what leasegate depends on and
says what is wrong in one line each: Redis (reachable, noeviction, persistence), the Redis user
(ACL WHOAMI; warned when it has more rights than any role needs), the artifact store, the
namespace, the broker (and who holds its queues), and whether this process, the live workers
and recent runtimes share one secret (their fingerprints in Redis).
Exit 0 when nothing failed (warnings allowed), 1 otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from celery.bin.base import CeleryCommand

from .common import about, leasegate_config, redacted

WORKERS_LIVE = 300.0     # seconds: a worker recorded since then counts as live
RUNTIMES_RECENT = 3600.0  # seconds: a runtime that started a run since then is recent


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def line(self, status: str, topic: str, text: str) -> None:
        self.failed += status == "FAIL"
        click.echo(f"{status:<5} {topic + ':':<10} {text}")


@click.command(cls=CeleryCommand)
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check Redis, the artifact store, the namespace, the broker and the secrets."""
    from ...ownership import connect

    config = leasegate_config(ctx)
    about(ctx)
    report = Report()
    client = connect(config.redis_url)
    try:
        if not _redis(report, client, config.redis_url):
            raise click.exceptions.Exit(1)
        role = _user(report, client, config.namespace)
        _artifacts(report, config.artifact_dir, config.namespace)
        if role == "beat":  # its user reaches redbeat's keys and the queues, nothing of ours
            report.line("ok", "namespace", "not checked: the beat role reads no leasegate key")
        else:
            _namespace(report, ctx, client)
        _broker(report, ctx)
        if role != "beat":
            _secrets(report, ctx, client)
    finally:
        client.close()
    click.echo("all checks passed" if not report.failed else f"{report.failed} check(s) failed")
    if report.failed:
        raise click.exceptions.Exit(1)


def _redis(report: Report, client: Any, url: str) -> bool:
    import redis

    try:
        info = client.info()
    except redis.RedisError as exc:
        report.line("FAIL", "redis", f"cannot reach {redacted(url)}: {exc}")
        return False
    policy = info.get("maxmemory_policy", "unknown")
    report.line("ok" if policy == "noeviction" else "FAIL", "redis",
                f"Redis {info.get('redis_version')} at {redacted(url)}, maxmemory-policy "
                f"{policy}" + ("" if policy == "noeviction" else
                               ": it may evict leases and dead letters; set noeviction"))
    aof = str(info.get("aof_enabled", "0")) == "1"
    try:
        save = str(client.config_get("save").get("save", "")).strip()
    except redis.RedisError:
        save = "?"  # CONFIG refused (a managed Redis): RDB unknown
    if aof or save not in ("", "?"):
        report.line("ok", "persist", f"AOF {'on' if aof else 'off'}, RDB save "
                    f"{save or 'off'!r}")
    else:
        rdb = "unknown" if save == "?" else "off"
        report.line("warn", "persist", f"AOF off and RDB save {rdb}: a Redis restart loses "
                    "leases, inboxes and dead letters (deploy/redis.conf turns AOF on)")
    return True


ADMIN_COMMANDS = (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "save"), ("KEYS", "x"),
                  ("DEBUG", "SLEEP", "0"), ("SHUTDOWN",))


def role_of(name: str, namespace: str) -> str | None:
    """The leasegate role a Redis user name stands for (``<namespace>-<role>``), if any."""
    from ..acl import ROLES, user_name

    return next((role for role in ROLES if user_name(namespace, role) == name), None)


def _user(report: Report, client: Any, namespace: str) -> str | None:
    """The Redis user in use and its role, and a warning when it holds rights no leasegate
    role needs; the role (None: not a role's user, or unknown)."""
    import redis

    from ...ownership import as_text

    try:
        name = as_text(client.acl_whoami())
    except redis.exceptions.NoPermissionError:
        report.line("warn", "user", "ACL WHOAMI refused: this user cannot say who it is "
                    "(deploy/users.acl grants +acl|whoami)")
        return None
    except redis.ResponseError:
        report.line("warn", "user", "Redis has no ACLs (before 6.0): every client may do "
                    "anything; deploy/users.acl needs Redis 6+")
        return None
    role = role_of(name, namespace)
    who = f"{name} (role {role})" if role else f"{name} (not a role of namespace {namespace})"
    try:
        rules = client.acl_getuser(name)
    except redis.exceptions.NoPermissionError:  # not an ACL admin: the usual for a role user
        try:
            client.config_get("maxmemory")
        except redis.exceptions.NoPermissionError:
            report.line("ok", "user", f"{who}: no admin rights (ACL, CONFIG refused)")
        else:
            report.line("warn", "user", f"{who} can run CONFIG, which no leasegate role "
                        "needs: use a role's user from deploy/users.acl")
        return role
    extra = ["ACL GETUSER"] + [c[0] for c in ADMIN_COMMANDS if _allowed(client, name, c, rules)]
    patterns = _words(rules.get("keys"))
    if "~*" in patterns or "*" in patterns or "allkeys" in _words(rules.get("flags")):
        extra.append("every key (~*)")
    report.line("warn", "user", f"{who} has more rights than any leasegate role needs: "
                f"{', '.join(extra)}; use a role's user from deploy/users.acl")
    return role


def _allowed(client: Any, name: str, command: tuple[str, ...], rules: dict[str, Any]) -> bool:
    """Whether ``name`` may run ``command`` (ACL DRYRUN on Redis 7; on 6.2, from its rules)."""
    import redis

    try:
        return client.execute_command("ACL", "DRYRUN", name, *command) in (b"OK", "OK")
    except redis.ResponseError:  # Redis 6.2: no DRYRUN
        commands = _words(rules.get("commands")) + _words(rules.get("categories"))
        everything = "allcommands" in _words(rules.get("flags")) or "+@all" in commands
        return everything and f"-{command[0].lower()}" not in commands


def _words(value: Any) -> list[str]:
    """An ACL GETUSER field as words: Redis 7 answers a string, 6.2 a list."""
    from ...ownership import as_text

    return str(value).split() if isinstance(value, str) else [as_text(v) for v in value or []]


def _artifacts(report: Report, artifact_dir: str, namespace: str) -> None:
    from ...broker import namespace_dir

    where = Path(artifact_dir).absolute()
    own = where / namespace_dir(namespace)
    if not where.is_dir():
        unset = ("" if os.environ.get("LEASEGATE_ARTIFACT_DIR")
                 else " (LEASEGATE_ARTIFACT_DIR unset)")
        report.line("FAIL", "artifacts", f"{where} does not exist{unset}: set it to the "
                    "workers' artifact directory")
        return
    if not os.access(where, os.W_OK | os.X_OK):
        report.line("FAIL", "artifacts", f"{where} is not writable by this user")
        return
    shards = sum(1 for _ in own.iterdir()) if own.is_dir() else 0
    report.line("ok" if shards else "warn", "artifacts", f"{own}" + (
        "" if shards else " is empty: is this the workers' LEASEGATE_ARTIFACT_DIR?"))


def _namespace(report: Report, ctx: click.Context, client: Any) -> None:
    from .common import client_for

    broker = client_for(ctx)
    letters = broker.dead_letters.count()
    keys = sum(1 for _ in client.scan_iter(match=f"{broker.keys.namespace}:*", count=1000))
    report.line("ok" if keys else "warn", "namespace",
                f"{broker.keys.namespace}: {keys} key(s), {letters} held dead letter(s)"
                + ("" if keys else ": nothing here yet; is LEASEGATE_NAMESPACE the workers'?"))


def _broker(report: Report, ctx: click.Context) -> None:
    from ..checks import claim_key
    from ..config import ConfigError
    from ..rabbitmq import check_consumer_timeout, is_amqp

    app = ctx.obj.app
    config = leasegate_config(ctx)
    url = str(app.conf.broker_url or config.broker_url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        report.line("FAIL", "broker", f"cannot reach {redacted(url)}: {exc}")
        return
    holders = ""
    if is_amqp(url):  # RabbitMQ: the consumer_timeout the workers were told must fit
        try:
            check_consumer_timeout(config)
        except ConfigError as exc:
            report.line("FAIL", "broker", f"{redacted(url)} reachable, but {exc}")
            return
        holders = (f", RabbitMQ consumer_timeout {config.rabbitmq_consumer_timeout:g} s "
                   "(LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT) covers LEASEGATE_MAX_DEADLINE")
    if url.startswith(("redis://", "rediss://")):
        import redis

        from ...ownership import is_tls, redis_tls_options

        # a rediss:// broker is reached with the same LEASEGATE_REDIS_TLS_* files as the store
        broker = redis.Redis.from_url(url, **(redis_tls_options() if is_tls(url) else {}))
        try:
            held = broker.get(claim_key(config.media_queue))
        finally:
            broker.close()
        holder = held.decode() if isinstance(held, bytes) else held
        if holder not in (None, config.namespace):
            report.line("FAIL", "broker", f"queue {config.media_queue!r} on {redacted(url)} is "
                        f"claimed by namespace {holder!r}, not {config.namespace!r}")
            return
        holders = (f", queue {config.media_queue!r} " +
                   ("claimed by this namespace" if holder else "not claimed (no worker)"))
    report.line("ok", "broker", f"{redacted(url)} reachable{holders}")


def _secrets(report: Report, ctx: click.Context, client: Any) -> None:
    from ...broker import (
        key_id,
        load_signing_key,
        recent_fingerprints,
        runtimes_refused,
        secret_fingerprint,
        workers_refusing,
    )
    from ..config import ConfigError
    from .common import client_for

    config = leasegate_config(ctx)
    keys = client_for(ctx).keys
    workers = recent_fingerprints(client, keys, "worker", WORKERS_LIVE)
    runtimes = recent_fingerprints(client, keys, "runtime", RUNTIMES_RECENT)
    try:
        held = config.client_keys()  # the name of what this process signs with, first
        signing = held["signing_key"]
        mine = ([key_id(load_signing_key(signing).public_key())] if signing else
                [secret_fingerprint(s) for s in held["secret"] or ()])
    except ConfigError:
        mine = []
        report.line("warn", "secret", "this process has no LEASEGATE_SECRET: it cannot be "
                    "compared (the dlq and runs commands need none)")
    if not mine and config.verify_keys:
        report.line("ok", "secret", "this process holds verify keys only: it signs nothing")
    if mine:
        refusing = workers_refusing(mine[0], workers)
        report.line("FAIL" if refusing else "ok", "secret", f"this process: {mine[0]}" + (
            f"; live worker(s) refusing it: {_names(refusing)}" if refusing else ""))
    if not workers:
        report.line("warn", "workers", f"no live worker recorded in the last {WORKERS_LIVE:g} s")
    else:
        report.line("ok", "workers", _names(workers))
    accepted = {fp for fps in workers.values() for fp in fps}
    refused = runtimes_refused(accepted, runtimes) if workers else {}
    if refused:
        report.line("FAIL", "runtimes", "sign with a secret no live worker accepts: "
                    + ", ".join(f"{name} ({fp})" for name, fp in sorted(refused.items())))
    else:
        report.line("ok" if runtimes else "warn", "runtimes", _names(runtimes) if runtimes
                    else f"no runtime started a run in the last {RUNTIMES_RECENT:g} s")


def _names(found: dict[str, list[str]]) -> str:
    return ", ".join(f"{name} ({'/'.join(fps)})" for name, fps in sorted(found.items()))
