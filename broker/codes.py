"""The broker's vocabulary: why a callback was quarantined, what a result is, what state a
dead letter is in. Lua writes these strings and Python reads them, so they are spelled once,
here; every module and the CLI take them from here (or the face)."""

from __future__ import annotations

# Why the gate quarantined a callback. The first five come from an envelope that was read and
# verified (its run was gone or late); the last two from bytes that never became one.
REASONS = ("lease_expired", "run_released", "superseded", "unknown_run", "deadline_passed",
           "malformed", "bad_signature")

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
