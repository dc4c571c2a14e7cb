"""The broker's vocabulary: why a callback was quarantined, what a result is, what state a
dead letter is in, why a replay was refused. Lua writes these strings and Python reads them,
so they are spelled once, here; every module and the CLI take them from here (or the face)."""

from __future__ import annotations

from ..ownership import ErrorCode

# Why the gate quarantined a callback. The first five come from an envelope that was read and
# verified (its run was gone or late); malformed, bad_signature, unknown_key and revoked_key
# from bytes that never became one; deadline_too_long from a worker that refused a verified
# envelope's deadline.
REASONS = ("lease_expired", "run_released", "superseded", "unknown_run", "deadline_passed",
           "malformed", "bad_signature", "unknown_key", "revoked_key",
           "deadline_too_long",
           "no_verdict")  # the reaper's: still pending past its deadline plus a grace

# What a worker delivers: a result, or the error that stopped it.
KINDS = ("result", "error")

# A dead letter's states. Held ones stay in the stream and the indexes; tombstones keep only
# their record and history, for max-age.
QUARANTINED = "quarantined"
REDELIVERED = "redelivered"
ARCHIVED = "archived"
EXPIRED = "expired"
DISCARDED = "discarded"
STATES = (QUARANTINED, REDELIVERED, ARCHIVED, EXPIRED, DISCARDED)
TOMBSTONES = (EXPIRED, DISCARDED)

# replay-5.lua's refusals as ``ReplayRefused.reason`` names them (a stable API: the CLI prints
# them, scripts match on them).
REPLAY_REFUSALS: dict[ErrorCode, str] = {
    ErrorCode.LETTER_NOT_FOUND: "not_found",
    ErrorCode.ALREADY_REDELIVERED: "already_redelivered",
    ErrorCode.NOT_QUARANTINED: "not_quarantined",
    ErrorCode.NO_PAYLOAD: "no_payload",
    ErrorCode.WRONG_SESSION: "wrong_session",
    ErrorCode.TARGET_NOT_ALIVE: "target_not_alive",
    ErrorCode.NO_INBOX: "no_inbox",
}
