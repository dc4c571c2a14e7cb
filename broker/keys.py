"""Key names of the broker layer, on top of the ownership registry's: one place that knows
where a run's inbox, a callback's memo and the dead letters live."""

from __future__ import annotations

from ..ownership import Keys

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

    @property
    def pending_index(self) -> str:
        """Deployment-wide sorted set of submitted callbacks by deadline (ms, server time),
        member ``<session key>\n<run id>\n<callback id>``: the reaper's work list; a member
        leaves with the callback's verdict (deliver-9.lua)."""
        return self.global_key("pending")

    # Deployment-wide dead letters (not tied to one session key). The stream's key is also the
    # prefix of every other dead-letter key; the names say "dlq" on the wire, for good.
    @property
    def dead_letters(self) -> str:
        return self.global_key("dlq")

    def dead_letter(self, dead_letter_id: str) -> str:
        return f"{self.dead_letters}:letter:{dead_letter_id}"

    def dead_letter_index(self, field: str, value: str) -> str:
        """Sorted set of letter ids by quarantine time; field is 'reason', 'sk' or 'tool'."""
        return f"{self.dead_letters}:idx:{field}:{value}"

    @property
    def dead_letter_stats(self) -> str:
        return f"{self.dead_letters}:stats"

    def raw_memo(self, digest: str) -> str:
        """Which letter holds this undecodable input already: one letter per distinct input."""
        return f"{self.dead_letters}:raw:{digest}"
