"""Key names of the broker layer, on top of the ownership registry's: one place that knows
where a run's inbox, a callback's memo and the dead letters live."""

from __future__ import annotations

from ..ownership import SHARDS, Keys, shard_of

# Companion keys of a run: they expire with its record (the registry extends them with it).
INBOX = ":inbox"
RESUME = ":resume"
PENDING = ":pending"
REQUESTS = ":requests"
RUN_COMPANIONS = (INBOX, RESUME, PENDING, REQUESTS)


class BrokerKeys(Keys):
    def inbox(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + INBOX

    def resume(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + RESUME

    def pending(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + PENDING

    def requests(self, session_key: str, run_id: str) -> str:
        """Hash callback id -> '<request id> <submitted at ms>': which submit call took an id,
        so that call's automatic retry finds its own entry instead of a duplicate."""
        return self.run(session_key, run_id) + REQUESTS

    def callback(self, session_key: str, run_id: str, callback_id: str) -> str:
        """The memo of a callback's first verdict: what makes delivery idempotent. Scoped to
        the run, so a caller's stable id (``call_0``) in the next run is a new callback."""
        return self.run(session_key, run_id) + ":cb:" + callback_id

    def shard_keys(self, session_key: str) -> tuple[str, str, str]:
        """The session's shard's dead letters, counters and pending index, in the order the
        gate's scripts take them (KEYS[7..9] of deliver-9.lua)."""
        shard = shard_of(session_key)
        return self.dead_letters(shard), self.metrics(shard), self.pending_index(shard)

    def pending_index(self, shard: int) -> str:
        """One shard's sorted set of submitted callbacks by deadline (ms, server time), member
        ``<session key>\n<run id>\n<callback id>``: the reaper's work list; a member leaves
        with the callback's verdict (deliver-9.lua)."""
        return self.shard_key(shard, "pending")

    # Dead letters, per shard: a session's letters live in its shard (its scripts write them
    # atomically with the verdict); undecodable input goes to the shard of its digest. The
    # stream's key is also the prefix of every other dead-letter key of the shard; the names say
    # "dlq" on the wire, for good.
    def dead_letters(self, shard: int) -> str:
        return self.shard_key(shard, "dlq")

    def dead_letter(self, dead_letter_id: str) -> str:
        return f"{self.dead_letters(letter_shard(dead_letter_id))}:letter:{dead_letter_id}"

    def dead_letter_index(self, shard: int, field: str, value: str) -> str:
        """Sorted set of letter ids by quarantine time; field is 'reason', 'sk' or 'tool'."""
        return f"{self.dead_letters(shard)}:idx:{field}:{value}"

    def dead_letter_stats(self, shard: int) -> str:
        return f"{self.dead_letters(shard)}:stats"

    def raw_memo(self, digest: str) -> str:
        """Which letter holds this undecodable input already: one letter per distinct input."""
        return f"{self.dead_letters(raw_shard(digest))}:raw:{digest}"


def letter_shard(dead_letter_id: str) -> int:
    """The shard a dead-letter id names: its sequence number modulo SHARDS (deadLetter.lua).
    Anything else names shard 0, where no letter has it: looking it up finds nothing."""
    ms, dash, seq = dead_letter_id.partition("-")
    return int(seq) % SHARDS if dash and ms.isdigit() and seq.isdigit() else 0


def raw_shard(digest: str) -> int:
    """The shard of undecodable input, by the hex digest of its bytes."""
    return int(digest[:8], 16) % SHARDS
