"""Worker configuration from environment variables, checked before a worker starts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..broker import (
    MIN_SECRET_BYTES,
    Envelope,
    NamespacedArtifactStore,
    Settings,
    broker_options,
    kombu_url,
)
from .keyfiles import key_files

INSECURE_DEV_SECRET = b"leasegate-insecure-development-secret"


class ConfigError(ValueError):
    """A configuration a worker must refuse to start with; the message says how to fix it."""


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0,
           inclusive: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value < minimum or (value == minimum and not inclusive):
        raise ConfigError(f"{name} must be {'>=' if inclusive else '>'} {minimum:g}, got {raw}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(one.strip() for one in env.get(name, "").split(",") if one.strip())


@dataclass(frozen=True)
class WorkerConfig:
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "redis://127.0.0.1:6379/0"
    secret: bytes | None = None
    previous_secrets: tuple[bytes, ...] = ()   # still accepted while a rotation is under way
    insecure_dev: bool = False
    # Ed25519 (docs/configuration.md "Asymmetric envelopes"): PEM file paths and key ids
    signing_key: str | None = None      # path of the private key: runtimes, the gateway
    verify_keys: tuple[str, ...] = ()   # paths of public keys (comma-separated in the env)
    revoked_keys: tuple[str, ...] = ()  # key ids refused even with their public key here
    worker_may_sign: bool = False       # a worker that is also a runtime may hold signing_key
    namespace: str = "lg"
    artifact_dir: str = "./leasegate-artifacts"
    generator: str = "procedural"
    generator_latency: float = 0.0
    check_interval: float = 2.0        # seconds between owner checks while a task works
    max_deadline: float = 1800.0       # the longest deadline a runtime may give an owned task
    visibility_timeout: float = 3900.0
    media_queue: str = "media"
    max_retries: int = 5               # transient provider errors, same callback id each time
    cron_file: str | None = None       # JSON list of cron jobs (see leasegate.workers.tasks.cron)
    metrics_port: int | None = None    # a worker serves /metrics itself when set
    # Background maintenance (workers/maintenance.py), one worker at a time per namespace.
    # The grace outlasts a finishing task's own delivery (OUTAGE_PATIENCE, 30 s, of Redis
    # outage included), so the reaper's no_verdict only stands in for a verdict that is lost.
    verdict_grace: float = 60.0
    maintenance_interval: float = 15.0  # 0: this worker runs no maintenance at all
    dlq_sweep_interval: float = 300.0
    collect_interval: float = 3600.0
    collect_grace: float = 3600.0      # an unreferenced artifact younger than this is kept
    # a verdict is acknowledged to Celery only once on this many replicas (WAIT), see
    # docs/failure-modes.md; LEASEGATE_MIN_REPLICAS and LEASEGATE_MIN_REPLICAS_TIMEOUT (ms)
    min_replicas: int = 0
    min_replicas_timeout_ms: int = 1000
    # RabbitMQ's consumer_timeout as the server has it (seconds, 0: disabled there); a worker
    # on an amqp:// broker refuses a LEASEGATE_MAX_DEADLINE it does not cover (workers/rabbitmq.py)
    rabbitmq_consumer_timeout: float = 1800.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        redis_url = env.get("LEASEGATE_REDIS_URL") or cls.redis_url
        secret = env.get("LEASEGATE_SECRET")
        insecure = env.get("LEASEGATE_INSECURE_DEV", "") in ("1", "true", "yes")
        max_deadline = _float(env, "LEASEGATE_MAX_DEADLINE", cls.max_deadline)
        try:
            durable = Settings.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            min_replicas=durable.min_replicas,
            min_replicas_timeout_ms=durable.min_replicas_timeout_ms,
            redis_url=redis_url,
            # redis-py's unix:// is kombu's redis+socket://: one socket path serves both
            broker_url=kombu_url(env.get("LEASEGATE_BROKER_URL") or redis_url),
            secret=secret.encode() if secret else None,
            previous_secrets=tuple(old.strip().encode() for old in
                                   env.get("LEASEGATE_PREVIOUS_SECRETS", "").split(",")
                                   if old.strip()),
            insecure_dev=insecure,
            signing_key=env.get("LEASEGATE_SIGNING_KEY") or None,
            verify_keys=_list(env, "LEASEGATE_VERIFY_KEYS"),
            revoked_keys=_list(env, "LEASEGATE_REVOKED_KEYS"),
            worker_may_sign=env.get("LEASEGATE_WORKER_MAY_SIGN", "") in ("1", "true", "yes"),
            namespace=env.get("LEASEGATE_NAMESPACE") or cls.namespace,
            artifact_dir=env.get("LEASEGATE_ARTIFACT_DIR") or cls.artifact_dir,
            generator=env.get("LEASEGATE_GENERATOR") or cls.generator,
            generator_latency=_float(env, "LEASEGATE_GENERATOR_LATENCY", 0.0, inclusive=True),
            check_interval=_float(env, "LEASEGATE_CHECK_INTERVAL", cls.check_interval),
            max_deadline=max_deadline,
            visibility_timeout=_float(env, "LEASEGATE_VISIBILITY_TIMEOUT",
                                      max(cls.visibility_timeout, max_deadline + 300)),
            media_queue=env.get("LEASEGATE_MEDIA_QUEUE") or cls.media_queue,
            cron_file=env.get("LEASEGATE_CRON_FILE") or None,
            metrics_port=int(_float(env, "LEASEGATE_METRICS_PORT", 0, inclusive=True)) or None,
            verdict_grace=_float(env, "LEASEGATE_VERDICT_GRACE", cls.verdict_grace,
                                 inclusive=True),
            maintenance_interval=_float(env, "LEASEGATE_MAINTENANCE_INTERVAL",
                                        cls.maintenance_interval, inclusive=True),
            dlq_sweep_interval=_float(env, "LEASEGATE_DLQ_SWEEP_INTERVAL",
                                      cls.dlq_sweep_interval),
            collect_interval=_float(env, "LEASEGATE_COLLECT_INTERVAL", cls.collect_interval),
            collect_grace=_float(env, "LEASEGATE_COLLECT_GRACE", cls.collect_grace,
                                 inclusive=True),
            max_retries=int(_float(env, "LEASEGATE_MAX_RETRIES", cls.max_retries,
                                   inclusive=True)),
            rabbitmq_consumer_timeout=_float(env, "LEASEGATE_RABBITMQ_CONSUMER_TIMEOUT",
                                             cls.rabbitmq_consumer_timeout, inclusive=True),
        )

    def artifact_store(self) -> NamespacedArtifactStore:
        """This namespace's artifacts: ``<LEASEGATE_ARTIFACT_DIR>/<namespace>/``, so that
        deployments sharing a volume never collect each other's images."""
        return NamespacedArtifactStore(self.artifact_dir, self.namespace)

    def secrets(self) -> list[bytes]:
        """The signing secret first, then previous ones still accepted during a rotation; or
        the refusal a worker must print instead of starting."""
        if self.secret:
            for name, value in (("LEASEGATE_SECRET", self.secret),
                                *(("LEASEGATE_PREVIOUS_SECRETS", old)
                                  for old in self.previous_secrets)):
                try:
                    Envelope.verify_secret_length(value)  # the one rule, the envelope's
                except ValueError:
                    raise ConfigError(f"{name} must be at least {MIN_SECRET_BYTES} bytes") \
                        from None
            return [self.secret, *self.previous_secrets]
        if self.insecure_dev:
            return [INSECURE_DEV_SECRET]
        raise ConfigError(
            "LEASEGATE_SECRET is not set: without it anyone who can write to the queue could "
            "forge callbacks. Set LEASEGATE_VERIFY_KEYS (workers) and LEASEGATE_SIGNING_KEY "
            "(runtimes), see `leasegate keygen`; or LEASEGATE_SECRET (16+ bytes, the same for "
            "runtimes and workers); or LEASEGATE_INSECURE_DEV=1 for a development machine only."
        )

    def client_keys(self) -> dict[str, Any]:
        """The keys a broker ``Client`` takes (``Client(..., **config.client_keys())``): the
        PEM files read and checked, the secrets only when set (or nothing else is); else the
        refusal a worker must print instead of starting."""
        try:
            signing, verify = key_files(self.signing_key, self.verify_keys, self.revoked_keys)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        use_secret = bool(self.secret) or not (signing or verify)
        return {"secret": self.secrets() if use_secret else None, "signing_key": signing,
                "verify_keys": verify, "revoked_keys": list(self.revoked_keys)}

    def check_worker_keys(self) -> None:
        """A worker verifies; holding a private key would let a compromised worker host mint
        envelopes, so it refuses one unless it is also a runtime (cron jobs)."""
        self.client_keys()
        if self.signing_key and not self.worker_may_sign:
            raise ConfigError(
                "LEASEGATE_SIGNING_KEY is set, but a worker needs only LEASEGATE_VERIFY_KEYS "
                "(public keys): a worker holding the private key could forge envelopes. Unset "
                "it, or set LEASEGATE_WORKER_MAY_SIGN=1 if this worker is also a runtime.")

    def check(self) -> None:
        """Everything a worker refuses to start without."""
        self.check_worker_keys()
        self.check_broker()
        if self.visibility_timeout <= self.max_deadline:
            raise ConfigError(
                f"visibility_timeout ({self.visibility_timeout:g} s) must exceed the longest "
                f"task deadline LEASEGATE_MAX_DEADLINE ({self.max_deadline:g} s): otherwise the "
                "Redis transport redelivers a task that is still running. Raise "
                "LEASEGATE_VISIBILITY_TIMEOUT or lower LEASEGATE_MAX_DEADLINE."
            )

    def check_broker(self) -> None:
        """A broker URL Celery can open, with what its scheme needs besides (TLS files, a
        sentinel master name: ``broker_options``)."""
        if self.broker_url.startswith(("redis+sentinel://", "rediss+sentinel://")):
            raise ConfigError(
                "LEASEGATE_BROKER_URL is a redis[s]+sentinel:// URL (it defaults to "
                "LEASEGATE_REDIS_URL), which Celery cannot open: set LEASEGATE_BROKER_URL to "
                "kombu's sentinel://host:port;sentinel://host:port/db and "
                "LEASEGATE_BROKER_MASTER_NAME to the sentinels' master name "
                "(docs/configuration.md)")
        try:
            broker_options(self.broker_url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
