"""Celery signal handlers of a leasegate worker: a worker serves its metrics once ready, records
its secret's fingerprint (and says loudly when recent runtimes sign with another), and a
revoked owned task's callback is still quarantined. ``install()`` connects them, once per
process, so that importing a module never changes what Celery does."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import task_revoked, worker_ready

from ..broker import (
    HEADER,
    EnvelopeError,
    recent_fingerprints,
    record_fingerprints,
    runtimes_refused,
    wire_from_header,
)
from ..ownership import RegistryUnavailable
from .config import WorkerConfig
from .tasks import OwnedTask, WorkerRuntime, patiently

log = logging.getLogger("leasegate.workers")


def serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    """With LEASEGATE_METRICS_PORT, a worker serves its processes' metrics itself."""
    config: WorkerConfig | None = getattr(getattr(sender, "app", None), "leasegate_config", None)
    if config is None or not config.metrics_port:
        return
    from .metrics import process_registry, serve

    serve(process_registry(), config.metrics_port)
    log.info("leasegate worker metrics on port %d", config.metrics_port)


RUNTIMES_RECENT = 3600.0  # seconds: a runtime that started a run since then is "recent"


def record_secret(sender: Any = None, **_: Any) -> None:
    """worker_ready: record this worker's secret fingerprints (current first, then those of a
    rotation) in Redis, refresh them on the maintenance timer, and log an ERROR naming the
    fingerprints when recent runtimes sign with a secret this worker refuses."""
    app = getattr(sender, "app", None)
    config: WorkerConfig | None = getattr(app, "leasegate_config", None)
    if app is None or config is None:
        return
    import socket

    from ..broker import Client
    from ..ownership import connect

    broker = Client(connect(config.redis_url), config.namespace, **config.client_keys())
    client, keys = broker.redis, broker.keys
    name = str(getattr(sender, "hostname", None) or socket.gethostname())
    accepted = broker.keyring.fingerprints()  # Ed25519 key ids, then HMAC secrets

    def refresh() -> None:
        record_fingerprints(broker.scripts, keys, "worker", name, accepted)

    try:
        refresh()
        refused = runtimes_refused(accepted, recent_fingerprints(client, keys, "runtime",
                                                                 RUNTIMES_RECENT))
    except RegistryUnavailable as exc:
        log.warning("could not record this worker's secret fingerprint: %s", exc)
        return
    app._leasegate_hooks = [*getattr(app, "_leasegate_hooks", []), refresh]
    log.info("leasegate worker %s: secret fingerprint %s", name, ", ".join(accepted))
    if refused:
        log.error("leasegate: SECRET MISMATCH: this worker accepts secret fingerprint(s) %s, "
                  "but recent runtime(s) sign with %s: their callbacks are quarantined as "
                  "bad_signature. Give workers and runtimes the same LEASEGATE_SECRET.",
                  ", ".join(accepted), ", ".join(f"{fp} ({who})" for who, fp in
                                                 sorted(refused.items())))


def quarantine_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A revoked owned task never runs; its callback still ends in exactly one place."""
    if not isinstance(sender, OwnedTask):
        return
    # request is the task's Context: message headers are its attributes
    value = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    if value is None:
        return
    wire = wire_from_header(value)
    task_id = getattr(request, "id", None)
    try:
        # Celery acked the message already: this is the callback's only chance, so it waits
        # out a Redis outage like every other verdict
        runtime = WorkerRuntime.for_app(sender.app)
        try:
            env = runtime.gate.open(wire)
        except EnvelopeError as exc:
            error = exc
            patiently(lambda: runtime.gate.quarantine_raw(wire, error))
            return
        verdict = patiently(lambda: runtime.gate.deliver(
            env, {"error": "cancelled", "reason": "revoked"}, kind="error"))
    except RegistryUnavailable as exc:
        log.error("LOST VERDICT: revoked task %s (%s) could not be quarantined, Redis stayed "
                  "unavailable (%s); its callback stays pending until the reaper gives it a "
                  "no_verdict dead letter after its deadline", task_id, sender.name, exc)
        return
    log.info("revoked callback %s: %s", env.callback_id, verdict.reason or "delivered")


def connect_signals() -> None:
    """Connect the handlers; a repeat is a no-op (the dispatch_uids), so every install() may."""
    worker_ready.connect(serve_worker_metrics, dispatch_uid="leasegate.serve_worker_metrics")
    worker_ready.connect(record_secret, dispatch_uid="leasegate.record_secret")
    task_revoked.connect(quarantine_revoked, dispatch_uid="leasegate.quarantine_revoked")
