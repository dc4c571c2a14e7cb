"""Key names and the checks on the names they are built from.

Every key of one session key carries the hash tag ``{<session key>}`` so that every key one
atomic operation touches lives in one Redis Cluster slot.
"""

from __future__ import annotations

MAX_SESSION_KEY_BYTES = 512
MAX_RUN_ID_BYTES = 128
MAX_NAMESPACE_BYTES = 64


def _check_name(field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, not {type(value).__name__}")
    size = len(value.encode())
    if size == 0:
        raise ValueError(f"{field} must not be empty")
    if size > limit:
        raise ValueError(f"{field} is {size} bytes long; the limit is {limit} bytes")
    if "{" in value or "}" in value:
        raise ValueError(f"{field} must not contain '{{' or '}}' (they delimit the hash tag)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{field} must not contain control characters")
    return value


def check_session_key(value: object) -> str:
    return _check_name("session_key", value, MAX_SESSION_KEY_BYTES)


def check_run_id(value: object) -> str:
    value = _check_name("run_id", value, MAX_RUN_ID_BYTES)
    if ":" in value:
        raise ValueError("run_id must not contain ':' (it separates key parts)")
    return value


def check_namespace(value: object) -> str:
    return _check_name("namespace", value, MAX_NAMESPACE_BYTES)


class Keys:
    """Builds the key names of one namespace (``lg`` unless configured)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)

    def session_prefix(self, session_key: str) -> str:
        return f"{self.namespace}:{{{session_key}}}:"

    def fence(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "fence"

    def owner(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "owner"

    def run_prefix(self, session_key: str) -> str:
        return self.session_prefix(session_key) + "run:"

    def run(self, session_key: str, run_id: str) -> str:
        return self.run_prefix(session_key) + run_id

    @property
    def metrics(self) -> str:
        """Deployment-wide counters (a hash) that the metrics exporter reads."""
        return self.global_key("metrics")

    def global_key(self, name: str) -> str:
        """A deployment-wide key (not tied to one session key)."""
        return f"{self.namespace}:{name}"
