"""What can go wrong with ownership, as exceptions a caller can act on."""

from __future__ import annotations


class OwnershipError(Exception):
    """Base class of the registry's errors."""


class LeaseLost(OwnershipError):
    """The caller is not the live owner of its run any more.

    ``reason`` is one of 'expired', 'superseded', 'released', 'unknown'.
    """

    REASONS = ("expired", "superseded", "released", "unknown")

    def __init__(self, reason: str, session_key: str = "", run_id: str = "") -> None:
        self.reason = reason
        self.session_key = session_key
        self.run_id = run_id
        super().__init__(reason)

    def __str__(self) -> str:
        where = f" (session {self.session_key!r}, run {self.run_id})" if self.run_id else ""
        return f"lease lost: {self.reason}{where}"


class LeaseHeld(OwnershipError):
    """An exclusive acquire found a live or parked run holding the session key."""

    def __init__(self, session_key: str, holder_run_id: str, holder_expires_at: float,
                 holder_state: str) -> None:
        self.session_key = session_key
        self.holder_run_id = holder_run_id
        self.holder_expires_at = holder_expires_at
        self.holder_state = holder_state
        super().__init__(
            f"session {session_key!r} is held by run {holder_run_id} ({holder_state}) "
            f"until {holder_expires_at:.3f} (server time)"
        )


class RegistryUnavailable(OwnershipError):
    """Redis could not be reached or could not answer: liveness is unknown, never assumed."""
