"""TLS to Redis: a ``rediss://`` URL takes its CA, client certificate and key from the
``LEASEGATE_REDIS_TLS_*`` environment, the same for redis-py (registry, gate) and kombu (broker).

The server's certificate is always verified; without ``LEASEGATE_REDIS_TLS_CA`` the system's
CAs are used.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

TLS_CA = "LEASEGATE_REDIS_TLS_CA"      # PEM file of the CA that signed the server's certificate
TLS_CERT = "LEASEGATE_REDIS_TLS_CERT"  # PEM file of this client's certificate (mutual TLS)
TLS_KEY = "LEASEGATE_REDIS_TLS_KEY"    # PEM file of this client's private key
TLS_SCHEMES = ("rediss",)


def is_tls(url: str) -> bool:
    return url.split("://", 1)[0] in TLS_SCHEMES


def _files(env: Mapping[str, str] | None) -> dict[str, str]:
    """The configured files by setting name; ValueError naming a setting whose file is absent."""
    env = os.environ if env is None else env
    found = {name: env[name] for name in (TLS_CA, TLS_CERT, TLS_KEY) if env.get(name)}
    for name, path in found.items():
        if not os.path.isfile(path):
            raise ValueError(f"{name}={path} is not a readable file")
    if (TLS_CERT in found) != (TLS_KEY in found):
        raise ValueError(f"{TLS_CERT} and {TLS_KEY} go together: set both or neither")
    return found


def redis_tls_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """redis-py's keyword arguments for a ``rediss://`` connection."""
    files = _files(env)
    return {"ssl_cert_reqs": "required", "ssl_ca_certs": files.get(TLS_CA),
            "ssl_certfile": files.get(TLS_CERT), "ssl_keyfile": files.get(TLS_KEY)}


def broker_use_ssl(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Celery's ``broker_use_ssl`` for a ``rediss://`` broker: kombu's
    Redis transport takes redis-py's names with an ``ssl.CERT_*`` constant."""
    files = _files(env)
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for key, name in (("ssl_ca_certs", TLS_CA), ("ssl_certfile", TLS_CERT),
                      ("ssl_keyfile", TLS_KEY)):
        if name in files:
            options[key] = files[name]
    return options


def explain_tls_failure(message: str) -> str:
    """A certificate refusal names the setting that fixes it; other messages pass unchanged."""
    if "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message:
        return (f"{message} (the Redis server's certificate was not trusted: set {TLS_CA} "
                f"to the PEM file of the CA that signed it)")
    return message
