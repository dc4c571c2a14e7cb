"""Key names of the broker layer, on top of the ownership registry's."""

from __future__ import annotations

from ..ownership import Keys

# Companion keys of a run: they expire with its record (the registry extends them with it).
INBOX = ":inbox"
RESUME = ":resume"
PENDING = ":pending"
RUN_COMPANIONS = (INBOX, RESUME, PENDING)


class BrokerKeys(Keys):
    def inbox(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + INBOX

    def resume(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + RESUME

    def pending(self, session_key: str, run_id: str) -> str:
        return self.run(session_key, run_id) + PENDING

    def callback(self, session_key: str, callback_id: str) -> str:
        """The memo of a callback's first verdict: what makes delivery idempotent."""
        return self.session_prefix(session_key) + "cb:" + callback_id

    # Deployment-wide dead letters (not tied to one session key).
    @property
    def dlq(self) -> str:
        return self.global_key("dlq")

    def letter(self, dlq_id: str) -> str:
        return f"{self.dlq}:letter:{dlq_id}"

    def dlq_index(self, field: str, value: str) -> str:
        """Sorted set of letter ids by quarantine time; field is 'reason', 'sk' or 'tool'."""
        return f"{self.dlq}:idx:{field}:{value}"

    @property
    def dlq_stats(self) -> str:
        return f"{self.dlq}:stats"

    def raw_memo(self, digest: str) -> str:
        return f"{self.dlq}:raw:{digest}"
