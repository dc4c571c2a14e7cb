"""Bulk redrive: replay every dead letter a filter selects into a live run, rate-limited, with
progress and cancel that any process can read and set.

Each letter goes through ``DeadLetters.replay`` (replay-5.lua), so the promise holds as for
one: into a live or parked run of the letter's own session key, once. A letter whose target
is not live stays a dead letter and is counted as refused, by reason. ``kind=error`` letters
(skipped or failed work, not results) are skipped unless ``force``.

Progress lives in Redis, ``<ns>:{redrive:<id>}`` (a hash, kept a day), so every ``serve``
process behind one address reports the same; the process that started a redrive runs it and
refreshes ``<ns>:{redrive:<id>}:alive``: a running redrive without it was abandoned.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...ownership import RegistryUnavailable, as_text, check_run_id, unavailable_as_error
from .letter import LetterNotFound, ReplayRefused
from .selection import FilterError, LetterFilter, matching_letters

if TYPE_CHECKING:
    from .store import DeadLetters

KEEP_SECONDS = 86400        # a finished redrive's record stays this long
ALIVE_MS = 15_000           # a running redrive's heartbeat key outlives a flush by this much
FLUSH_SECONDS = 0.25        # progress is written at most this often (and at the end)
MAX_RATE = 10_000.0         # letters per second
RUNNING, DONE, CANCELLED, FAILED, ABANDONED = ("running", "done", "cancelled", "failed",
                                               "abandoned")
COUNTS = ("total", "done", "replayed", "refused", "skipped")


class RedriveNotFound(LookupError):
    """No redrive with that id (never started, or its record expired)."""


@dataclass(frozen=True)
class RedriveRequest:
    """What to redrive and where: ``to_current`` (each letter's session's current run) or
    ``run_id`` (one run), exactly one unless ``dry_run``. ``rate``: letters per second."""

    where: LetterFilter = field(default_factory=LetterFilter)
    to_current: bool = False
    run_id: str | None = None
    dry_run: bool = False
    rate: float | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if self.to_current and self.run_id is not None:
            raise FilterError("run_id", "give run_id or to_current, not both")
        if not (self.to_current or self.run_id is not None or self.dry_run):
            raise FilterError("to_current", "a redrive needs a target: to_current or run_id")
        if self.run_id is not None:
            try:
                check_run_id(self.run_id)
            except (TypeError, ValueError) as exc:
                raise FilterError("run_id", str(exc)) from None
        rate = self.rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                                 or not 0 < rate <= MAX_RATE):
            raise FilterError("rate", f"rate must be a number of letters per second in "
                                      f"(0, {MAX_RATE:g}], got {rate!r:.40}")

    def as_dict(self) -> dict[str, Any]:
        return {"where": self.where.as_dict(), "to_current": self.to_current,
                "run_id": self.run_id, "dry_run": self.dry_run, "rate": self.rate,
                "force": self.force}


@dataclass
class RedriveProgress:
    id: str
    state: str
    dry_run: bool = False
    total: int = 0
    done: int = 0
    replayed: int = 0
    refused: int = 0
    skipped: int = 0
    refusals: dict[str, int] = field(default_factory=dict)   # reason -> letters
    request: dict[str, Any] = field(default_factory=dict)
    by: str = ""
    started_at: float | None = None   # Redis server time, seconds
    updated_at: float | None = None
    error: str = ""

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    def to_fields(self) -> dict[str, str | int]:
        return {"state": self.state, "dry_run": int(self.dry_run), "by": self.by,
                "error": self.error, "request": json.dumps(self.request),
                "refusals": json.dumps(self.refusals),
                **{name: getattr(self, name) for name in COUNTS}}

    @classmethod
    def from_fields(cls, redrive_id: str, raw: dict[Any, Any], alive: bool) -> RedriveProgress:
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        state = f["state"]
        counts = {name: int(f.get(name) or 0) for name in COUNTS}
        return cls(redrive_id, ABANDONED if state == RUNNING and not alive else state,
                   f.get("dry_run") == "1", **counts,
                   refusals=json.loads(f.get("refusals") or "{}"),
                   request=json.loads(f.get("request") or "{}"), by=f.get("by", ""),
                   started_at=int(f["created"]) / 1000 if f.get("created") else None,
                   updated_at=int(f["updated"]) / 1000 if f.get("updated") else None,
                   error=f.get("error", ""))


class TokenBucket:
    """``rate`` tokens a second, at most ``max(1, rate)`` saved up."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate or 1.0)
        self.tokens = self.capacity
        self.at = time.monotonic()

    def wait_time(self) -> float:
        """Seconds until a token is there (0: take it now)."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        if self.rate is not None:
            self.tokens -= 1


Candidate = tuple[str, str | None]   # letter id, session key


class Redrives:
    """Start, run, read and cancel redrives over one namespace's dead letters."""

    def __init__(self, letters: DeadLetters, alive_ms: int = ALIVE_MS) -> None:
        self.letters = letters
        self.client = letters.client
        self.keys = letters.keys
        self.alive_ms = alive_ms  # how long a redrive outlives its process's last flush

    def key(self, redrive_id: str) -> str:
        # hash-tagged: the record and its ':alive' heartbeat change in one transaction
        return self.keys.global_key(f"{{redrive:{redrive_id}}}")

    def start(self, request: RedriveRequest, by: str) -> RedriveProgress:
        """Record a redrive and run it in a background thread of this process."""
        progress = self._create(request, by)
        threading.Thread(target=self._run_logged, args=(progress, request),
                         name=f"redrive-{progress.id}", daemon=True).start()
        return progress

    def run(self, request: RedriveRequest, by: str,
            on_progress: Callable[[RedriveProgress], None] | None = None) -> RedriveProgress:
        """Run a redrive here and now (the CLI's way); it is recorded like a started one, so
        the console sees it and can cancel it."""
        progress = self._create(request, by)
        self._execute(progress, request, on_progress)
        return progress

    def get(self, redrive_id: str) -> RedriveProgress:
        if not isinstance(redrive_id, str) or not redrive_id.isalnum() or len(redrive_id) > 64:
            raise RedriveNotFound(redrive_id)
        with unavailable_as_error():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.key(redrive_id))
            pipe.exists(self.key(redrive_id) + ":alive")
            raw, alive = pipe.execute()
        if not raw or b"state" not in raw:
            raise RedriveNotFound(redrive_id)
        return RedriveProgress.from_fields(redrive_id, raw, bool(alive))

    def cancel(self, redrive_id: str) -> RedriveProgress:
        """Ask a running redrive to stop after the letter in hand (its process reads the flag
        at its next flush); a finished one is returned as it is."""
        progress = self.get(redrive_id)
        if not progress.finished:
            with unavailable_as_error():
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(self.key(redrive_id), "cancel", "1")
                pipe.expire(self.key(redrive_id), KEEP_SECONDS)
                pipe.execute()
        return progress

    # -- the work ------------------------------------------------------------------------------

    def _create(self, request: RedriveRequest, by: str) -> RedriveProgress:
        progress = RedriveProgress(uuid.uuid4().hex, RUNNING, request.dry_run,
                                   request=request.as_dict(), by=by[:200])
        self._flush(progress, created=True)
        return progress

    def _run_logged(self, progress: RedriveProgress, request: RedriveRequest) -> None:
        # a failure is recorded in the progress; a thread has no caller to raise it to
        with contextlib.suppress(Exception):
            self._execute(progress, request, None)

    def _execute(self, progress: RedriveProgress, request: RedriveRequest,
                 on_progress: Callable[[RedriveProgress], None] | None) -> None:
        try:
            todo = self._candidates(progress, request)
            if progress.state == RUNNING:
                progress.total = len(todo)
                if not request.dry_run:
                    self._replay_all(progress, request, todo, on_progress)
            if progress.state == RUNNING:
                progress.state = DONE
        except Exception as exc:
            progress.state, progress.error = FAILED, f"{type(exc).__name__}: {exc}"[:1000]
            with contextlib.suppress(RegistryUnavailable):
                self._flush(progress)
            raise
        self._flush(progress)
        if on_progress:
            on_progress(progress)

    def _candidates(self, progress: RedriveProgress, request: RedriveRequest) -> list[Candidate]:
        todo: list[Candidate] = []
        last = time.monotonic()
        for letter in matching_letters(self.letters, request.where):
            if letter.kind == "error" and not request.force:
                progress.skipped += 1  # a notice that work failed, not a result: never by default
            else:
                todo.append((letter.id, letter.session_key))
            if time.monotonic() - last >= FLUSH_SECONDS:  # counting 100k letters takes a while
                progress.total = len(todo)
                if self._flush(progress):
                    progress.state = CANCELLED
                    return []
                last = time.monotonic()
        return todo

    def _replay_all(self, progress: RedriveProgress, request: RedriveRequest,
                    todo: list[Candidate],
                    on_progress: Callable[[RedriveProgress], None] | None) -> None:
        bucket = TokenBucket(request.rate)
        pause = threading.Event()  # never set: an interruptible wait between tokens
        last = time.monotonic()
        for letter_id, session_key in todo:
            while (wait := bucket.wait_time()) > 0 or time.monotonic() - last >= FLUSH_SECONDS:
                if time.monotonic() - last >= FLUSH_SECONDS:
                    if self._flush(progress):
                        progress.state = CANCELLED
                        return
                    if on_progress:
                        on_progress(progress)
                    last = time.monotonic()
                if wait > 0:
                    pause.wait(min(wait, FLUSH_SECONDS))
            bucket.take()
            self._replay_one(progress, request, letter_id, session_key)
            progress.done += 1

    def _replay_one(self, progress: RedriveProgress, request: RedriveRequest, letter_id: str,
                    session_key: str | None) -> None:
        # undecodable input names no session: nobody can be trusted to own it
        run_id = session_key and (request.run_id or self._current_run(session_key))
        refusal = "no_session" if session_key is None else "no_current_run"
        if session_key and run_id:
            try:
                self.letters.replay(letter_id, _Target(session_key, run_id),
                                    by=f"{progress.by} (redrive {progress.id})"[:200],
                                    force=request.force)
                refusal = ""
            except ReplayRefused as exc:
                refusal = exc.reason
            except LetterNotFound:
                refusal = "not_found"
        if refusal:
            progress.refused += 1
            progress.refusals[refusal] = progress.refusals.get(refusal, 0) + 1
        else:
            progress.replayed += 1

    def _current_run(self, session_key: str) -> str | None:
        with unavailable_as_error():
            owner = self.client.get(self.keys.owner(session_key))
        return as_text(owner) if owner else None

    def _flush(self, progress: RedriveProgress, created: bool = False) -> bool:
        """Write the progress (and the heartbeat while running); True if a cancel was asked."""
        key = self.key(progress.id)
        with unavailable_as_error():
            seconds, micros = self.client.time()
            now = int(seconds) * 1000 + int(micros) // 1000
            pipe = self.client.pipeline(transaction=True)
            fields: dict[Any, Any] = {**progress.to_fields(), "updated": now}
            if created:
                fields["created"] = now
            pipe.hset(key, mapping=fields)
            pipe.expire(key, KEEP_SECONDS)
            if progress.finished:
                pipe.delete(key + ":alive")
            else:
                pipe.set(key + ":alive", "1", px=self.alive_ms)
            pipe.hget(key, "cancel")
            pipe.hget(key, "created")
            *_, cancel, started = pipe.execute()
        progress.updated_at = now / 1000
        progress.started_at = int(started) / 1000 if started else None
        return bool(cancel)


@dataclass(frozen=True)
class _Target:
    session_key: str
    run_id: str
