"""The gate: the one place where a finished background result is handed to its owner or
quarantined. The decision and the write are one Lua script (deliver-9.lua)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack  # type: ignore[import-untyped]
import redis

from ..ownership import Scripts, as_text, confirm, unavailable_as_error
from .artifacts import ArtifactRef
from .codes import KINDS, REASONS
from .envelope import (
    RAW_CAP,
    BadSignature,
    Envelope,
    EnvelopeError,
    Keyring,
    VerifiedEnvelope,
    as_keyring,
    digest_args,
)
from .keys import BrokerKeys, raw_shard
from .records import pack_body
from .settings import Settings

quarantine_log = logging.getLogger("leasegate.quarantine")


@dataclass(frozen=True)
class Admission:
    """The gate's answer to "would you deliver this now?" (nothing written)."""

    admitted: bool
    reason: str | None
    repeat: bool


@dataclass(frozen=True)
class Verdict:
    """Where one callback ended. ``entry_id`` is the inbox entry id when delivered, else the
    dead-letter id. ``repeat`` means the callback was seen before: this is its first verdict."""

    delivered: bool
    reason: str | None
    entry_id: str
    repeat: bool = False
    detail: str = ""
    seq: int | None = None
    callback_id: str | None = None
    session_key: str | None = None
    run_id: str | None = None

    @property
    def dead_letter_id(self) -> str | None:
        return None if self.delivered else self.entry_id


def log_quarantine(verdict: Verdict, fields: dict[str, Any]) -> None:
    """One JSON line per quarantine, with every ownership field, for log pipelines."""
    fields.pop("sig", None)
    record = {"event": "leasegate.quarantined", "dead_letter_id": verdict.entry_id,
              "reason": verdict.reason, "detail": verdict.detail, **fields}
    quarantine_log.warning(json.dumps(record, sort_keys=True, default=str))


class Gate:
    def __init__(self, client: redis.Redis, keys: BrokerKeys, scripts: Scripts,
                 secrets: Sequence[bytes] | Keyring, settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.keyring = as_keyring(secrets)  # HMAC secrets, or Ed25519 verify keys, or both
        self.secrets = self.keyring.secrets
        self.settings = settings
        # the deployment's limits live in the loaded script, not in every call's arguments
        self._deliver_script = scripts.bind("deliver", {
            "MEMO_TTL_MS": settings.memo_ttl_ms,
            "DLQ_MAX_AGE_MS": int(settings.dlq_max_age * 1000),
            "DLQ_MAX_LEN": settings.dlq_max_len,
            "DLQ_BODY_CAP": settings.dlq_body_cap})

    def deliver(
        self,
        envelope: Envelope | bytes,
        result: Any = None,
        artifacts: Iterable[ArtifactRef] = (),
        kind: Literal["result", "error"] = "result",
        count: str = "",
    ) -> Verdict:
        """Deliver ``result`` (msgpack-encodable) for ``envelope`` (an Envelope or its wire
        bytes). Untrusted bytes that do not decode are quarantined, never raised.

        ``count``: one more counter field of the metrics hash (such as
        ``skipped:<reason>:<tool>``), counted in the same step as the verdict and only when it
        is first written: a retried delivery never counts twice."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        body = pack_body("result", result, self.settings.max_result_bytes)
        refs = pack_body("artifacts", [ref.to_dict() for ref in artifacts],
                         self.settings.max_result_bytes)
        try:
            # an Envelope object is checked like bytes (its signature may be forged too),
            # unless it is the VerifiedEnvelope an earlier open() or verify() returned
            env = (envelope.verify(self.keyring) if isinstance(envelope, Envelope)
                   else self.open(envelope))
        except EnvelopeError as exc:
            wire = envelope.encode() if isinstance(envelope, Envelope) else envelope
            return self.quarantine_raw(wire, exc)
        return self._deliver(env, kind, body, refs, count)

    def refuse(self, envelope: Envelope, reason: str, detail: str) -> Verdict:
        """Quarantine ``envelope``'s callback for a worker's own ``reason`` (one of REASONS,
        e.g. deadline_too_long), whatever its owner's state; a callback that already has a
        verdict keeps it. The letter's body is ``{"error": reason, "detail": detail}``."""
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}; got {reason!r}")
        body = pack_body("result", {"error": reason, "detail": detail[:1024]},
                         self.settings.max_result_bytes)
        try:
            env = envelope.verify(self.keyring)
        except EnvelopeError as exc:
            return self.quarantine_raw(envelope.encode(), exc)
        return self._deliver(env, "error", body, pack_body("artifacts", [], 16),
                             refusal=(reason, detail[:1024]))

    def check(self, env: Envelope) -> Admission:
        """Would ``env``'s callback be delivered now? ``repeat``: it already has a verdict,
        on as many replicas as ``Settings.min_replicas`` asks for (else NotDurable)."""
        sk, run_id = env.session_key, env.run_id
        keys = [self.keys.run(sk, run_id), self.keys.owner(sk),
                self.keys.callback(sk, run_id, env.callback_id), self.keys.inbox(sk, run_id)]
        with unavailable_as_error():
            reply = self.scripts("check", keys, [env.fence, env.deadline_at_ms, run_id,
                                                 env.incarnation])
        admission = Admission(int(reply[0]) == 1, as_text(reply[1]) or None,
                              int(reply[2]) == 1)
        if admission.repeat:  # a redelivered message is acknowledged on this answer
            confirm(self.client, self.scripts.durability,
                    f"the verdict of callback {env.callback_id}", keys[2])
        return admission

    def open(self, wire: bytes, task_args: Mapping[str, Any] | None = None) -> VerifiedEnvelope:
        """Decode and verify wire bytes (EnvelopeError for anything untrustworthy); with
        ``task_args``, also prove they are the arguments the run signed for."""
        env = Envelope.decode(wire, self.keyring, max_bytes=self.settings.max_envelope_bytes)
        if task_args is not None and env.args_digest != digest_args(task_args):
            raise BadSignature("task arguments do not match the envelope's digest", wire, env)
        return env

    def _deliver(self, env: Envelope, kind: str, body: bytes, refs: bytes,
                 count: str = "", refusal: tuple[str, str] = ("", "")) -> Verdict:
        sk, run_id = env.session_key, env.run_id
        k = self.keys
        keys = [k.run(sk, run_id), k.owner(sk), k.inbox(sk, run_id), k.resume(sk, run_id),
                k.pending(sk, run_id), k.callback(sk, run_id, env.callback_id),
                *k.shard_keys(sk)]
        # one msgpack argument: redis-py's per-argument packing cost more than the script.
        # use_bin_type=False: Redis's cmsgpack reads no bin type, bytes go as raw strings
        fields = msgpack.packb(
            [run_id, str(env.fence), env.callback_id, sk, env.tool, env.task_id, kind, body,
             refs, str(env.submitted_at_ms), str(env.deadline_at_ms), k.run_prefix(sk),
             env.incarnation, count, *refusal], use_bin_type=False)
        with unavailable_as_error():
            reply = self.scripts(self._deliver_script, keys, [fields])
        # one string, its six fields joined by newlines; detail is last and may hold newlines
        verdict = self._verdict(as_text(reply).split("\n", 5), env.callback_id, sk, run_id)
        if not verdict.delivered and not verdict.repeat:
            log_quarantine(verdict, {**env.to_dict(), "kind": kind})
        return verdict

    def quarantine_raw(self, wire: bytes | Any, error: EnvelopeError) -> Verdict:
        """Dead-letter input that never became a trustworthy envelope, raw bytes kept (capped)."""
        raw = wire if isinstance(wire, bytes) else repr(wire).encode()
        claimed = getattr(error, "claimed", None) or {}
        digest = hashlib.sha256(raw).hexdigest()
        shard = raw_shard(digest)
        keys = [self.keys.dead_letters(shard), self.keys.raw_memo(digest), self.keys.metrics(shard)]
        args = [error.reason, str(error), raw[:RAW_CAP], len(raw),
                int(self.settings.dlq_max_age * 1000), self.settings.dlq_max_len,
                str(claimed.get("session_key", "")), str(claimed.get("tool", "")),
                str(claimed.get("task_id", ""))]
        with unavailable_as_error():
            reply = self.scripts("quarantine", keys, args)
        verdict = self._verdict(reply, None, None, None)
        if not verdict.repeat:
            log_quarantine(verdict, {"raw_size": len(raw), "claimed": claimed})
        return verdict

    @staticmethod
    def _verdict(reply: Sequence[Any], callback_id: str | None, session_key: str | None,
                 run_id: str | None) -> Verdict:
        delivered = int(reply[0]) == 1
        return Verdict(
            delivered=delivered,
            reason=None if delivered else as_text(reply[1]),
            entry_id=as_text(reply[2]),
            repeat=int(reply[4]) == 1,
            detail=as_text(reply[5]),
            seq=int(reply[3]) if delivered else None,
            callback_id=callback_id,
            session_key=session_key,
            run_id=run_id,
        )

