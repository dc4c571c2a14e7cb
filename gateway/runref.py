"""The opaque run reference every ``/v1/runs/{run}`` route takes.

A ref names one incarnation of one run: ``<base64url JSON [1, session key, run id, fence,
incarnation]>.<base64url HMAC>``, the MAC keyed by the deployment's signing secret. Any number
of ``serve`` processes read each other's refs with no shared memory; the Lua commands check the
fence and incarnation it carries, so the gateway only ever acts for that incarnation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..broker import Client, Run
from ..ownership import Lease, RunState
from .errors import ApiError

VERSION = 1
MAC_BYTES = 16
MAX_REF_CHARS = 2048  # a 512-byte session key and a 128-byte run id fit many times over


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _keys(secrets: Sequence[bytes]) -> list[bytes]:
    # a key of its own, derived from each secret still accepted (rotation keeps old refs)
    return [hmac.new(s, b"leasegate-run-ref", hashlib.sha256).digest() for s in secrets]


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:MAC_BYTES])


@dataclass(frozen=True)
class RunRef:
    session_key: str
    run_id: str
    fence: int
    incarnation: str

    def encode(self, secrets: Sequence[bytes]) -> str:
        body = _b64(json.dumps([VERSION, self.session_key, self.run_id, self.fence,
                                self.incarnation], separators=(",", ":")).encode())
        return f"{body}.{_mac(_keys(secrets)[0], body)}"

    @classmethod
    def of(cls, lease: Lease) -> RunRef:
        return cls(lease.session_key, lease.run_id, lease.fence, lease.incarnation)

    def run(self, client: Client) -> Run:
        """A Run for exactly this incarnation; its expiry is unknown until Redis says."""
        return Run(client, Lease(self.session_key, self.run_id, self.fence, 0.0, 0.0,
                                 RunState.LIVE, incarnation=self.incarnation))


def decode(ref: str, secrets: Sequence[bytes]) -> RunRef:
    """The ref's run, or a 404 naming the ``run`` field when it is not one we issued."""
    body, _, mac = ref.partition(".")
    if len(ref) <= MAX_REF_CHARS and body and mac and any(
            hmac.compare_digest(mac, _mac(key, body)) for key in _keys(secrets)):
        try:
            version, session_key, run_id, fence, incarnation = json.loads(_unb64(body))
        except (ValueError, TypeError, binascii.Error):
            pass
        else:
            if version == VERSION and isinstance(session_key, str) and \
                    isinstance(run_id, str) and type(fence) is int and \
                    isinstance(incarnation, str):
                return RunRef(session_key, run_id, fence, incarnation)
    raise ApiError(404, "run_not_found", "no such run: the run ref was not issued by this "
                   "deployment (altered, truncated, or signed with another secret)", "run")
