"""Every error code a Lua command of leasegate returns, whichever layer's command it is: one
enum, one meaning per number (as BullMQ's ErrorCode). A command's header names the codes it
returns; tests check that each header and this enum agree."""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    # ownership: acquire, extend, and the broker's start-run and submit that build on them
    LEASE_HELD = -1           # exclusive acquire: a live or parked run holds the session key
    LEASE_LOST = -2           # the caller's run is no longer live or parked (reason follows)
    RUN_EXISTS = -3           # the run id is already taken in this session key
    # broker: dead letters (discard, replay)
    LETTER_NOT_FOUND = -4     # no such letter, not even a tombstone
    LETTER_GONE = -5          # already a tombstone: 'expired' | 'discarded'
    ALREADY_REDELIVERED = -6  # replayed before (the run it went to follows)
    NOT_QUARANTINED = -7      # 'archived' | 'expired' | 'discarded': not replayable
    NO_PAYLOAD = -8           # malformed / bad_signature input, or a body too large to keep
    WRONG_SESSION = -9        # the target run belongs to another session key
    TARGET_NOT_ALIVE = -10    # the target run is not live or parked (its state follows)
    NO_INBOX = -11            # the target has no inbox: entry 1 is never anything but a prompt
    # broker: submit
    CALLBACK_ID_USED = -30    # the run already used this callback id (another submit call)
