"""The runtime-facing side: start runs, sign envelopes for their background work, read
their inboxes. One ``Client`` per process, shared by its runs."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from ..ownership import (
    LUA_INCLUDES,
    ErrorCode,
    Lease,
    LeaseLost,
    Outcome,
    Policy,
    Registry,
    RunState,
    RunStatus,
    Scripts,
    as_text,
    check_run_id,
    check_seconds,
    connect,
    server_time_ms,
    shard_of,
    unavailable_as_error,
)
from .deadletters import DeadLetters
from .envelope import Envelope, Keyring, check_secrets, utf8_secrets
from .fingerprints import recent, record, workers_refusing
from .gate import Gate
from .inbox import Inbox
from .keys import RUN_COMPANIONS, BrokerKeys
from .records import pack_body
from .settings import Settings
from .transport import Route, Transport, routes
from .waiting import take_signal

log = logging.getLogger("leasegate.runtime")
FINGERPRINT_EVERY = 300.0  # seconds between a client's secret-fingerprint records and checks


@dataclass(frozen=True)
class ReleaseReport:
    """What releasing a run left behind: callbacks still pending, and whether they were
    cancelled. Pending callbacks of a released run end in the dead letters, never lost."""

    status: RunStatus
    pending: dict[str, str] = field(default_factory=dict)   # callback id -> tool
    cancelled: bool = False

    @property
    def state(self) -> RunState:
        return self.status.state


def check_deadline(deadline: object, maximum: float) -> None:
    """A deadline within the deployment's maximum (``Settings.max_deadline``): a worker
    refuses longer ones, so say so before anything is sent."""
    check_seconds("deadline", deadline, maximum)


def check_callback_id(value: object) -> str:
    """A caller's callback id: the rules of a run id (non-empty, bounded, no ':'), by name."""
    try:
        return check_run_id(value)
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("run_id", "callback_id", 1)) from None


Secret = bytes | str | Sequence[bytes | str]
Pem = bytes | str


class Client:
    """A runtime's handle on one namespace: starts runs, and holds the gate, the registry and
    the dead letters. ``redis_client`` is the redis-py client it talks through. ``signing_key``
    (Ed25519 PEM) signs version 3 envelopes, else ``secret`` signs version 2 (HMAC); the gate
    accepts ``verify_keys``, the signing key's and every secret, never ``revoked_keys``."""

    def __init__(self, redis_client: redis.Redis, namespace: str = "lg", *,
                 secret: Secret | None = None, signing_key: Pem | None = None,
                 verify_keys: Sequence[Pem] = (), revoked_keys: Sequence[str] = (),
                 settings: Settings | None = None,
                 celery_app: Any = None,
                 tasks: Mapping[str, tuple[str, str] | Route] | None = None) -> None:
        self.redis = redis_client
        self.transport = Transport(celery_app)  # only for Run.submit and cancelling
        self.tasks = routes(tasks)  # tool -> Route (task name, default queue)
        self.settings = settings or Settings()
        self.secrets = [] if secret is None else check_secrets(utf8_secrets(secret))
        self.keyring = Keyring(self.secrets, signing_key, verify_keys, revoked_keys)
        self.keys = BrokerKeys(namespace)
        s = self.settings
        self.registry = Registry(redis_client, namespace, max_ttl=s.max_ttl, max_park=s.max_park,
                                 retention=s.retention, companions=RUN_COMPANIONS,
                                 durability=s.durability)
        self.scripts = Scripts(redis_client, Path(__file__).parent / "commands",
                               includes=(LUA_INCLUDES,), durability=s.durability)
        self.gate = Gate(redis_client, self.keys, self.scripts, self.keyring, s)
        self.dead_letters = DeadLetters(redis_client, self.keys, self.scripts, s)
        # what it signs with, by name (None: it verifies only)
        self.fingerprint = self.keyring.signer_fingerprint() if self.keyring.can_sign else None
        self._next_fingerprint_check = 0.0

    def check_secret(self) -> dict[str, list[str]]:
        """Record this runtime's secret fingerprint and compare it with the live workers':
        the workers (name -> fingerprints they accept) that would quarantine everything
        this runtime signs as bad_signature, also logged as a WARNING. Run at the first
        ``start_run`` and every FINGERPRINT_EVERY seconds after."""
        self._next_fingerprint_check = time.monotonic() + FINGERPRINT_EVERY
        if self.fingerprint is None:
            return {}
        record(self.scripts, self.keys, "runtime", f"{socket.gethostname()}:{os.getpid()}",
               [self.fingerprint])
        refusing = workers_refusing(self.fingerprint, recent(self.redis, self.keys, "worker"))
        if refusing:
            log.warning("leasegate: this runtime signs with secret fingerprint %s, but "
                        "worker(s) %s accept only %s: their callbacks will be quarantined as "
                        "bad_signature or unknown_key. Give the workers this key's public "
                        "key (LEASEGATE_VERIFY_KEYS) or the same LEASEGATE_SECRET.",
                        self.fingerprint, ", ".join(sorted(refusing)),
                        ", ".join(sorted({fp for fps in refusing.values() for fp in fps})))
        return refusing

    @classmethod
    def from_url(cls, url: str, namespace: str = "lg", *,
                 secret: Secret | None = None, signing_key: Pem | None = None,
                 verify_keys: Sequence[Pem] = (), revoked_keys: Sequence[str] = (),
                 settings: Settings | None = None, broker_url: str | None = None,
                 tasks: Mapping[str, tuple[str, str] | Route] | None = None) -> Client:
        """``broker_url`` (default: ``url``) is where ``Run.submit`` sends Celery tasks.
        ``settings`` None: the defaults, with LEASEGATE_MIN_REPLICAS(_TIMEOUT) from the
        environment."""
        transport = Transport.for_broker(broker_url or url)
        return cls(connect(url), namespace, secret=secret, signing_key=signing_key,
                   verify_keys=verify_keys, revoked_keys=revoked_keys,
                   settings=settings or Settings.from_env(),
                   celery_app=transport.app, tasks=tasks)

    @property
    def celery_app(self) -> Any:
        """The Celery app ``Run.submit`` sends with (None: this client cannot submit)."""
        return self.transport.app

    def server_time_ms(self) -> int:
        return server_time_ms(self.redis)

    def start_run(self, session_key: str, prompt: Any, ttl: float = 60.0,
                  policy: Policy = "supersede", run_id: str | None = None) -> Run:
        """Acquire a run's lease and write its prompt as inbox entry 1, atomically.

        With ``Settings.min_replicas`` it returns only once the lease reached that many
        replicas, else raises NotDurable; called again with the same ``run_id`` it is the same
        call (the same incarnation): the run it started, confirmed, or a fresh start if a
        failover lost it."""
        if time.monotonic() >= self._next_fingerprint_check:
            self.check_secret()
        acquisition = self.registry.prepare_acquire(session_key, ttl, policy, run_id)
        body = pack_body("prompt", prompt, self.settings.max_prompt_bytes)
        inbox = acquisition.run_key + RUN_COMPANIONS[0]
        with self.registry.unconfirmed.kept(acquisition), unavailable_as_error():
            reply = self.scripts("start-run", [*acquisition.keys, inbox],
                                 [*acquisition.argv, body])
        return Run(self, self.registry.finish_acquire(acquisition, reply))

    def attach(self, session_key: str, run_id: str) -> Run:
        """A Run object for an existing run (another process started it)."""
        status = self.registry.status(session_key, check_run_id(run_id))
        if status.state is RunState.UNKNOWN or status.fence is None:
            raise LookupError(f"no run {run_id} of session {session_key!r}")
        lease = Lease(session_key, run_id, status.fence, status.expires_at or 0.0,
                      status.ttl or 0.0, status.state, incarnation=status.incarnation or "")
        return Run(self, lease)


class Run:
    """One run of a session key, as its runtime sees it."""

    def __init__(self, client: Client, lease: Lease) -> None:
        self.client = client
        self.lease = lease
        self.inbox = Inbox(client.redis, client.keys.inbox(lease.session_key, lease.run_id),
                           client.settings.max_park)

    def __repr__(self) -> str:
        return f"Run({self.session_key!r}, {self.run_id!r}, fence={self.fence})"

    @property
    def session_key(self) -> str:
        return self.lease.session_key

    @property
    def run_id(self) -> str:
        return self.lease.run_id

    @property
    def fence(self) -> int:
        return self.lease.fence

    def envelope(self, tool: str, task_args: Mapping[str, Any] | None = None,
                 deadline: float = 600.0, callback_id: str | None = None,
                 task_id: str | None = None) -> Envelope:
        """A signed envelope for one background call; its deadline is counted on server time."""
        check_deadline(deadline, self.client.settings.max_deadline)
        return self._sign(tool, task_args, deadline, callback_id or uuid.uuid4().hex, task_id,
                          self.client.server_time_ms())

    def _sign(self, tool: str, task_args: Mapping[str, Any] | None, deadline: float,
              callback_id: str, task_id: str | None, now: int) -> Envelope:
        keyring = self.client.keyring
        key = keyring.signing_key or (keyring.secrets[0] if keyring.secrets else None)
        if key is None:
            raise RuntimeError("this client holds verify keys only: give it a signing_key "
                               "(or a secret) to sign envelopes")
        return Envelope.create(
            key, callback_id=callback_id, session_key=self.session_key,
            run_id=self.run_id, fence=self.fence, incarnation=self.lease.incarnation, tool=tool,
            task_args=dict(task_args or {}),
            submitted_at_ms=now, deadline_at_ms=now + round(deadline * 1000),
            task_id=task_id or callback_id,
        )

    def renew(self, ttl: float | None = None) -> Lease:
        self.lease = self.client.registry.renew(self.lease, ttl)
        return self.lease

    def park(self, until: float = 300.0) -> Lease:
        """Wait for callbacks without heartbeats; each delivery leaves a resume signal."""
        self.lease = self.client.registry.park(self.lease, until)
        return self.lease

    def submit(self, tool: str, *, deadline: float = 600.0, queue: str | None = None,
               callback_id: str | None = None, **task_args: Any) -> str:
        """Send ``tool`` as a Celery task owned by this run; returns its callback id.

        The task is sent by name: the runtime never imports worker code. ``callback_id``: the
        caller's own id (an LLM tool-call id, say), unique within this run; None for a fresh
        one. Raises LeaseLost if this run is no longer live or parked, ValueError if this run
        already used ``callback_id``.
        """
        if self.client.celery_app is None:
            raise RuntimeError("submit needs a Celery app: Client(..., celery_app=app) "
                               "or Client.from_url(...)")
        if tool not in self.client.tasks:
            raise ValueError(f"tool {tool!r} has no task; known: {sorted(self.client.tasks)}")
        route = self.client.tasks[tool]
        check_deadline(deadline, self.client.settings.max_deadline)
        callback_id = uuid.uuid4().hex if callback_id is None else check_callback_id(callback_id)
        # fresh per call: redis-py's retry of this very call after a lost reply finds its entry
        request_id = uuid.uuid4().hex
        keys = self.client.keys
        sk, run_id = self.session_key, self.run_id
        pending, requests = keys.pending(sk, run_id), keys.requests(sk, run_id)
        index = keys.pending_index(shard_of(sk))
        with unavailable_as_error():
            reply = self.client.scripts(
                "submit", [keys.run(sk, run_id), pending, requests, index],
                [self.fence, callback_id, tool, request_id, round(deadline * 1000), sk, run_id,
                 self.lease.incarnation])
        if int(reply[0]) == ErrorCode.CALLBACK_ID_USED:
            raise ValueError(f"callback_id {callback_id!r} is already used in run {run_id!r} "
                             f"of session {sk!r}")
        if int(reply[0]) != 0:  # ErrorCode.LEASE_LOST, reason follows
            raise LeaseLost(as_text(reply[1]), sk, run_id)
        try:
            # the script's server time dates the envelope: no separate TIME round trip
            env = self._sign(tool, task_args, deadline, callback_id, None, int(reply[1]))
            self.client.transport.send(route, env, task_args, queue)
        except Exception:
            # never sent: not pending, and the id is free again
            self.client.redis.hdel(pending, callback_id)
            self.client.redis.hdel(requests, callback_id)
            self.client.redis.zrem(index, f"{sk}\n{run_id}\n{callback_id}")
            raise
        return callback_id

    def pending(self) -> dict[str, str]:
        """Callbacks submitted and not yet delivered or quarantined: callback id -> tool."""
        with unavailable_as_error():
            raw = self.client.redis.hgetall(
                self.client.keys.pending(self.session_key, self.run_id))
        return {as_text(k): as_text(v) for k, v in raw.items()}

    def release(self, outcome: Outcome = "completed",
                cancel_pending: bool = False) -> ReleaseReport:
        """End the run. Callbacks still pending are reported; their results will be
        quarantined. ``cancel_pending`` also revokes their Celery tasks, so queued ones never
        start (workers quarantine them as they drop them; running ones stop at their next
        owner check either way)."""
        pending = self.pending()
        status = self.client.registry.release(self.lease, outcome)
        cancelled = bool(cancel_pending and pending and self.client.transport.revoke(pending))
        return ReleaseReport(status, pending, cancelled)

    def status(self) -> RunStatus:
        return self.client.registry.status(self.lease)

    def wait_resume(self, timeout: float) -> str | None:
        """Block until a callback is delivered to this run: its callback id, once per
        delivery, in delivery order; None after ``timeout`` seconds (up to the park limit).
        A delivery that landed before the wait began (even while the run was live) counts."""
        limit = self.client.settings.max_park
        check_seconds("timeout", timeout, limit, positive=False)
        return take_signal(self.client.redis,
                           self.client.keys.resume(self.session_key, self.run_id), timeout,
                           keep=limit)
