"""Owned tasks: Celery tasks whose result belongs to the run that submitted them.

Lifecycle of one owned task:
1. Before the work: open the envelope from the ``leasegate`` header and ask the gate whether it
   would deliver. A dead, superseded or late owner means no work at all: the callback is
   quarantined with the reason (GPU minutes are the expensive part).
2. During: a watcher thread asks again every ``check_interval`` seconds and cancels the work's
   token when the owner is gone; the work stops at its next checkpoint.
3. After: artifacts go to the store, then the gate delivers or quarantines. Errors travel the
   same way as kind=error callbacks, so a live run never waits for ever.

Whatever escapes these steps (leasegate's own code included) still ends in one kind=error
verdict (``internal``); a message not bound to its envelope (another task's name, another
task id) or a deadline beyond the worker's ``max_deadline`` is quarantined with no work.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry

from ...broker import (
    HEADER,
    ArtifactError,
    BadSignature,
    Envelope,
    EnvelopeError,
    Verdict,
    VerifiedEnvelope,
    wire_from_header,
)
from ...ownership import RegistryUnavailable
from ..metrics import GATE_LATENCY
from .errors import BadRequest, Cancelled, CancelToken, Quarantined, TransientError
from .runtime import WorkerRuntime, patiently
from .verdicts import error_payload, internal_payload, storable

log = logging.getLogger("leasegate.workers")


@dataclass
class OwnedResult:
    """What an owned task returns: a small payload for the inbox, and files for the store."""

    payload: dict[str, Any]
    files: list[tuple[bytes, str]] = field(default_factory=list)  # (data, media type)


@dataclass
class OwnedContext:
    """What the work function gets besides its own arguments."""

    envelope: Envelope
    cancel: CancelToken
    runtime: WorkerRuntime

    def checkpoint(self) -> None:
        """Raise Cancelled if the owner is gone (as the watcher last saw it)."""
        self.cancel.raise_if_cancelled()


class OwnedTask(Task):  # type: ignore[misc]
    """Base class of owned tasks: reliable settings and the ownership lifecycle."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    serializer = "msgpack"
    typing = False  # the work function takes an OwnedContext first; callers never pass it
    tool: str | None = None  # the tool its envelopes name; None: the name's last dotted part
    throws = (Quarantined,)  # an expected outcome: logged in one line, not as a crash

    @property
    def tool_name(self) -> str:
        """The tool an envelope must name to run here."""
        return self.tool or str(self.name).rsplit(".", 1)[-1]

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        runtime = WorkerRuntime.for_app(self.app)
        opened: list[VerifiedEnvelope] = []  # the envelope, once trusted: the fallback's owner
        try:
            try:
                verdict = self._own(runtime, args, kwargs, opened)
            except (RegistryUnavailable, Retry, Reject, Ignore):
                raise
            except Exception as exc:
                if not opened:
                    raise  # no trusted envelope: nothing names an owner to give a verdict to
                log.exception("owned task %s failed outside its work: an internal verdict",
                              self.name)
                verdict = self._deliver(runtime, opened[0], internal_payload(exc), "error")
        except RegistryUnavailable as exc:
            # Redis stayed away past our patience: nothing was decided. Give the message back
            # (a retry would have to publish through that same Redis); if even that fails, it
            # stays unacknowledged and the transport restores it after visibility_timeout.
            # The gate's memo makes the repeat harmless: still exactly one verdict.
            log.warning("Redis unavailable for callback work of task %s: requeued (%s)",
                        self.request.id, exc)
            raise Reject(exc, requeue=True) from exc
        if verdict is not None and not verdict.delivered and not verdict.repeat:
            # raised only now, its verdict written: nothing above can turn it into a second
            raise Quarantined(verdict.reason or "quarantined", verdict.entry_id, verdict.detail)

    def _own(self, runtime: WorkerRuntime, args: tuple[Any, ...], kwargs: dict[str, Any],
             opened: list[VerifiedEnvelope]) -> Verdict | None:
        """The callback's verdict, or None when an earlier delivery of it gave one."""
        wire = self._wire()
        try:
            env = runtime.gate.open(wire, task_args=kwargs)
            if args:  # positional arguments are never signed for
                raise BadSignature("task arguments do not match the envelope's digest", wire,
                                   env)
            self._check_binding(wire, env)
        except EnvelopeError as exc:
            error = exc
            verdict = patiently(lambda: runtime.gate.quarantine_raw(wire, error))
            log.warning("quarantined %s message for task %s: %s (dead letter %s)",
                        error.reason, self.name, error, verdict.entry_id)
            return verdict
        opened.append(env)
        refused = self._refused_deadline(runtime, env)
        if refused is not None:
            return refused

        admission = patiently(lambda: runtime.gate.check(env))
        if admission.repeat:
            log.info("callback %s already has a verdict (%s): no work", env.callback_id,
                     admission.reason)
            return None
        if not admission.admitted:
            # the skip is counted in the same gate step: a retried delivery never counts twice
            verdict = self._deliver(runtime, env, {"error": "skipped",
                                                   "reason": admission.reason},
                                    "error", count=f"skipped:{admission.reason}:{env.tool}")
            log.info("skipped %s for callback %s: owner %s", self.name, env.callback_id,
                     admission.reason)
            return verdict
        return self._work(runtime, env, kwargs)

    def _check_binding(self, wire: bytes, env: VerifiedEnvelope) -> None:
        """A signed envelope is good for one message: its tool's task, its task id. Re-sent
        under another task or id, it is a replay (the genuine message keeps its verdict)."""
        if env.tool != self.tool_name:
            raise BadSignature(f"envelope is for tool {env.tool!r}, but task {self.name!r} "
                               f"runs tool {self.tool_name!r}", wire, env)
        if env.task_id != self.request.id:
            raise BadSignature(f"envelope is for task id {env.task_id!r}, but the message's "
                               f"id is {self.request.id!r}", wire, env)

    def _refused_deadline(self, runtime: WorkerRuntime,
                          env: VerifiedEnvelope) -> Verdict | None:
        """Quarantine a deadline longer than this worker's max_deadline, with no work: past
        the visibility timeout the message would be handed out (and generated) twice."""
        span_ms = env.deadline_at_ms - env.submitted_at_ms
        limit = runtime.config.max_deadline
        if span_ms <= round(limit * 1000):
            return None
        detail = (f"deadline is {span_ms / 1000:g} s; this worker's maximum "
                  f"(LEASEGATE_MAX_DEADLINE) is {limit:g} s")
        verdict = patiently(lambda: runtime.gate.refuse(env, "deadline_too_long", detail))
        log.warning("refused %s callback %s: %s (dead letter %s)", self.name,
                    env.callback_id, detail, verdict.entry_id)
        return verdict


    def _wire(self) -> bytes:
        headers = self.request.headers or {}
        value = headers.get(HEADER, getattr(self.request, HEADER, None))
        if value is None:
            return repr({"task": self.name, "id": self.request.id,
                         "headers": sorted(headers)}).encode()
        return wire_from_header(value)

    def _work(self, runtime: WorkerRuntime, env: Envelope,
              kwargs: dict[str, Any]) -> Verdict:
        cancel = CancelToken()
        runtime.watch.watch(env, cancel)
        log.info("working on %s callback %s (attempt %d, pid %d)", self.name, env.callback_id,
                 self.request.retries + 1, os.getpid())
        try:
            outcome = self.run(OwnedContext(env, cancel, runtime), **kwargs)
        except Cancelled as exc:
            return self._deliver(runtime, env, error_payload("cancelled", exc), "error")
        except BadRequest as exc:
            return self._deliver(runtime, env, error_payload("bad_request", exc,
                                                      field=getattr(exc, "field", None)),
                          "error")
        except TransientError as exc:
            if self.request.retries < runtime.config.max_retries:
                countdown = exc.retry_after or min(60.0, 2.0 ** self.request.retries)
                raise self.retry(exc=exc, countdown=countdown * (1 + random.random() / 4),
                                 max_retries=runtime.config.max_retries) from exc
            return self._deliver(runtime, env, error_payload("transient", exc,
                                                             retries=self.request.retries),
                                 "error")
        except Exception as exc:
            log.exception("owned task %s failed", self.name)
            return self._deliver(runtime, env, error_payload(type(exc).__name__, exc), "error")
        else:
            if not isinstance(outcome, OwnedResult):
                outcome = OwnedResult(payload={"value": outcome})
            try:
                refs = [runtime.store.put(data, media_type)
                        for data, media_type in outcome.files]
            except (OSError, ArtifactError) as exc:
                log.exception("artifact store failed for callback %s", env.callback_id)
                return self._deliver(runtime, env, error_payload("artifact_store", exc),
                                     "error")
            # a result the gate cannot store becomes an error that says why
            payload, kind = storable(outcome.payload, runtime.gate.settings.max_result_bytes)
            return self._deliver(runtime, env, payload, kind,
                                 refs if kind == "result" else [])
        finally:
            runtime.watch.unwatch(env)

    def _deliver(self, runtime: WorkerRuntime, env: Envelope, payload: dict[str, Any],
                 kind: str, refs: list[Any] | None = None, count: str = "") -> Verdict:
        started = time.perf_counter()
        verdict = patiently(lambda: runtime.gate.deliver(
            env, payload, refs or [], kind=kind, count=count))  # type: ignore[arg-type]
        GATE_LATENCY.observe(time.perf_counter() - started)
        if verdict.delivered:
            log.info("delivered %s callback %s to run %s", kind, env.callback_id, env.run_id)
        if self.app.conf.worker_send_task_events and not verdict.repeat:
            # for `celery events` and Flower: the ownership fields of every verdict
            self.send_event(
                "leasegate-delivered" if verdict.delivered else "leasegate-quarantined",
                callback_id=env.callback_id, session_key=env.session_key, run_id=env.run_id,
                fence=env.fence, tool=env.tool, kind=kind, reason=verdict.reason,
                entry_id=verdict.entry_id, detail=verdict.detail)
        return verdict


def owned_task(app: Celery, *, tool: str | None = None,
               **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare an owned task: ``@owned_task(app, name="...")``; route it with task_routes.

    ``tool`` is the tool name runtimes submit it as (their ``Client(tasks=...)`` key); by
    default the last dotted part of the task's name (``leasegate.image_generate``:
    ``image_generate``). Envelopes for any other tool are quarantined, never run.
    """
    if tool is not None:
        if not isinstance(tool, str) or not tool:
            raise ValueError(f"tool must be a non-empty string (the envelopes' tool), got {tool!r}")
        options["tool"] = tool
    return app.task(base=OwnedTask, **options)  # type: ignore[no-any-return]
