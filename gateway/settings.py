"""The gateway's configuration: the workers' ``LEASEGATE_*`` environment plus its own."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..workers import ConfigError, WorkerConfig
from .ratelimit import RateLimit
from .tokens import TokenBook

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: a prompt (256 KiB at most) and its JSON overhead


@dataclass(frozen=True)
class GatewaySettings:
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    tokens_file: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    insecure_local: bool = False  # no token book: every request is the local operator
    rate_limit: RateLimit = field(default_factory=RateLimit)  # per token, all processes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 insecure_local: bool = False) -> GatewaySettings:
        env = os.environ if env is None else env
        raw = env.get("LEASEGATE_MAX_BODY_BYTES", "")
        try:
            max_body = int(raw) if raw else DEFAULT_MAX_BODY
        except ValueError:
            raise ConfigError(f"LEASEGATE_MAX_BODY_BYTES={raw!r} is not a whole number") \
                from None
        if max_body < 1024:
            raise ConfigError(f"LEASEGATE_MAX_BODY_BYTES must be >= 1024, got {max_body}")
        return cls(WorkerConfig.from_env(env), env.get("LEASEGATE_TOKENS_FILE") or None,
                   max_body, insecure_local, RateLimit.from_env(env))

    def token_book(self) -> TokenBook | None:
        """The book, or None when ``--insecure-local`` stands in for it."""
        if self.tokens_file:
            return TokenBook.load(self.tokens_file)
        if self.insecure_local:
            return None
        raise ConfigError("LEASEGATE_TOKENS_FILE is not set: `leasegate serve` needs a token "
                          "book (see docs/console.md), or --insecure-local on a loopback "
                          "address for a development machine")

    def cookie_key(self) -> bytes:
        """Signs console cookies and CSRF tokens; derived from the signing secret so that
        every ``serve`` process behind one address accepts the others' cookies."""
        return hmac.new(self.worker.secrets()[0], b"leasegate-console-cookie",
                        hashlib.sha256).digest()
