"""What every request shares: one broker Client (Redis pool and Celery producer), the token
book and the artifact store; built once per process by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..broker import Client, NamespacedArtifactStore
from .ratelimit import RateLimiter
from .settings import GatewaySettings
from .tokens import TokenBook


@dataclass
class Gateway:
    settings: GatewaySettings
    tokens: TokenBook | None  # None: --insecure-local
    client: Client
    artifacts: NamespacedArtifactStore
    cookie_key: bytes
    limiter: RateLimiter

    @classmethod
    def from_settings(cls, settings: GatewaySettings, client: Client | None = None) -> Gateway:
        config = settings.worker
        tokens = settings.token_book()
        client = client or Client.from_url(config.redis_url, config.namespace,
                                           **config.client_keys(),
                                           broker_url=config.broker_url)
        limiter = RateLimiter(client.redis, config.namespace, settings.rate_limit)
        return cls(settings, tokens, client, config.artifact_store(), settings.cookie_key(),
                   limiter)


def gateway(request: Request) -> Gateway:
    """The dependency every route takes to reach Redis, the broker and the artifacts."""
    found: Gateway = request.app.state.gateway
    return found
