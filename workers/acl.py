"""Redis ACL users, one per leasegate role, limited to one namespace's keys and the commands
the role needs: ``python -m leasegate.workers.acl --namespace lg > deploy/users.acl``.

Roles: ``runtime`` (starts runs, submits tasks), ``worker`` (serves the queues, delivers
through the gate), ``operator`` (``celery dlq``/``runs``, redrive), ``exporter`` (``celery
leasegate metrics``: reads only), ``viewer`` (the console's read-only role: reads only) and
``beat`` (``celery beat`` with redbeat: its schedule and lock, and pushing ticks onto the
queues; no leasegate key at all). ``leasegate serve`` runs as ``operator``: it replays dead
letters and its run releases revoke tasks through Celery's control channel.
Without ``--passwords`` the users have no password: nobody can log in as them until the file
is generated again with one. Works on Redis 6.2 and 7 (no ``%R~`` selectors).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from ..ownership import Keys
from .config import WorkerConfig
from .installation import redbeat_prefix

ROLES = ("runtime", "worker", "operator", "exporter", "viewer", "beat")
# Everything that reads or writes data and runs the gate's Lua; never an admin command.
# -@dangerous drops FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, MODULE, SHUTDOWN, ACL GETUSER...;
# SCRIPT keeps LOAD and EXISTS only (Redis 6.2 cannot remove a subcommand: no -script|flush).
_WRITER = ("-@all +@read +@write +@keyspace +@scripting +@connection +@transaction "
           "+@blocking -@dangerous -script +script|load +script|exists +info +time +acl|whoami")
# Reads only; INFO (doctor, the worker's eviction check), TIME (server time of leases) and
# ACL WHOAMI (doctor) are not in @read.
_READER = "-@all +@read +@connection -@dangerous +info +time +acl|whoami"
KOMBU_KEYS = ("unacked", "unacked_index", "unacked_mutex", "_kombu.binding_deadlines")


def queue_patterns(queues: Sequence[str]) -> list[str]:
    """A queue's list, its priority lists (``<name>\\x06\\x16<n>``), binding and claim keys."""
    out: list[str] = []
    for queue in queues:
        out += [queue, f"{queue}??[0-9]", *bindings(queue), f"leasegate:queue-claim:{queue}"]
    return out


def bindings(exchange: str) -> list[str]:
    """kombu's sets of an exchange's bindings (Celery names a queue's exchange after it)."""
    return [f"_kombu.binding.{exchange}", f"_kombu.binding_permanent.{exchange}"]


def role_rules(role: str, namespace: str, queues: Sequence[str]) -> str:
    """The ACL rules (after the user's name and password) of one role."""
    own = [f"{namespace}:*"]
    redbeat = redbeat_prefix(namespace)
    if not redbeat.startswith(f"{namespace}:"):
        own.append(f"{redbeat}*")  # the default namespace keeps redbeat's own prefix
    # Celery's control (pidbox) and events exchanges: fanout bindings and their channels
    control = [*bindings("celery.pidbox"), *bindings("reply.celery.pidbox"),
               *bindings("celeryev"), "*.celery.pidbox", "*.celery.pidbox??[0-9]",
               "celeryev.*"]
    if role == "runtime":
        keys, channels, commands = own + queue_patterns(queues), "resetchannels", _WRITER
    elif role in ("worker", "operator"):
        keys = own + queue_patterns(queues) + list(KOMBU_KEYS) + control
        channels, commands = "&*", _WRITER + " +@pubsub"  # pidbox replies, worker events
    elif role in ("exporter", "viewer"):
        keys, channels, commands = own + queue_patterns(queues), "resetchannels", _READER
    elif role == "beat":  # redbeat's keys (its lock is Lua) and the queues ticks go to
        keys, channels, commands = [f"{redbeat}*", *queue_patterns(queues)], "resetchannels", \
            _WRITER
    else:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return " ".join(["resetkeys", *(f"~{k}" for k in keys), channels, commands])


def acl_file(namespace: str, queues: Sequence[str],
             passwords: dict[str, str] | None = None) -> str:
    """The ACL file: the default user off, then one user ``<namespace>-<role>`` per role."""
    Keys(namespace)  # checks the name
    lines = ["user default off resetkeys resetchannels -@all"]
    for role in ROLES:
        secret = (passwords or {}).get(role)
        password = f"#{hashlib.sha256(secret.encode()).hexdigest()}" if secret else "resetpass"
        lines.append(f"user {user_name(namespace, role)} on {password} "
                     f"{role_rules(role, namespace, queues)}")
    return "\n".join(lines) + "\n"


def user_name(namespace: str, role: str) -> str:
    return f"{namespace}-{role}"


def load_passwords(path: Path) -> dict[str, str]:
    """``role=password`` lines; a missing file is created with random passwords (mode 0600)."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{role}={secrets.token_urlsafe(24)}\n" for role in ROLES)
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        role, sep, secret = line.partition("=")
        if not sep or role.strip() not in ROLES or not secret.strip():
            raise SystemExit(f"--passwords {path}:{number}: expected role=password with role "
                             f"one of {', '.join(ROLES)}")
        found[role.strip()] = secret.strip()
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m leasegate.workers.acl",
                                     description="Write a Redis ACL file, one user per role.")
    parser.add_argument("--namespace", default=WorkerConfig.namespace)
    parser.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                        help="a Celery queue the deployment uses (default: celery, media)")
    parser.add_argument("--passwords", type=Path, metavar="FILE",
                        help="role=password lines (created with random ones if missing)")
    args = parser.parse_args(argv)
    try:
        Keys(args.namespace)
    except ValueError as exc:
        parser.error(f"--namespace: {exc}")
    queues = args.queues or ["celery", WorkerConfig.media_queue]
    for queue in queues:
        if not queue or any(c.isspace() for c in queue):
            parser.error(f"--queue {queue!r}: a queue name must be non-empty without spaces")
    passwords = load_passwords(args.passwords) if args.passwords else None
    sys.stdout.write(acl_file(args.namespace, queues, passwords))


if __name__ == "__main__":
    main()
