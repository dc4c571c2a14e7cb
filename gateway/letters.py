"""Dead letters as the console shows them: filters read from a request (a 422 naming the
field), a letter in its JSON shape with the URLs of its images, and letter-id checks."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from ..broker import (
    ArtifactMissing,
    DeadLetter,
    FilterError,
    LetterFilter,
    LetterNotFound,
)
from .console_models import ArtifactOut, LetterOut
from .errors import ApiError
from .state import Gateway
from .tokens import Token

LETTER_ID = re.compile(r"^\d{1,20}-\d{1,20}$")   # a stream entry id
DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|min|m|h|d|w)")
UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
API_FIELDS = {"session_key": "session"}  # LetterFilter's names -> the query's


def actor(token: Token) -> str:
    """Who a letter's history names for a console or API action."""
    return f"{token.name} (console)"


@dataclass(frozen=True)
class RunRef:
    """A replay's target."""

    session_key: str
    run_id: str


def current_run(gw: Gateway, session_key: str) -> str | None:
    """The run the session's owner pointer names (the replay script checks it is live)."""
    owner = gw.client.redis.get(gw.client.keys.owner(session_key))
    return owner.decode() if isinstance(owner, bytes) else owner


def check_letter_id(letter_id: str) -> str:
    """A 404 before Redis for anything that cannot be a letter id."""
    if not LETTER_ID.match(letter_id):
        raise LetterNotFound(letter_id)
    return letter_id


def parse_since(text: str) -> float:
    """'90s', '30m', '2h', '7d', '1d12h' -> seconds; 422 naming ``since`` otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ApiError(422, "invalid", f"since: {text[:40]!r} is not a duration like 90s, "
                                       "30m, 2h, 7d", "since")
    return sum(float(n) * UNITS[u] for n, u in parts)


def letter_filter(gw: Gateway, reason: str | None = None, kind: str | None = None,
                  state: str | None = None, session: str | None = None,
                  tool: str | None = None, since: str | None = None) -> LetterFilter:
    """The filter of a request; an empty value is no filter (what an HTML form sends)."""
    since_at = None
    if since:
        since_at = max(0.0, gw.client.server_time_ms() / 1000 - parse_since(since))
    try:
        return LetterFilter(reason=reason or None, kind=kind or None, state=state or None,
                            session_key=session or None, tool=tool or None, since=since_at)
    except FilterError as exc:
        raise as_api_error(exc) from None


def as_api_error(exc: FilterError) -> ApiError:
    field = API_FIELDS.get(exc.field, exc.field)
    return ApiError(422, "invalid", str(exc).replace(exc.field, field, 1), field)


def is_image(media_type: str) -> bool:
    return media_type.startswith("image/")


def image_url(letter_id: str, digest: str) -> str:
    return f"/v1/dead-letters/{letter_id}/image?digest={digest}"


def thumbnail_url(letter_id: str, digest: str) -> str:
    return f"/v1/dead-letters/{letter_id}/thumbnail?digest={digest}"


def first_image(letter: DeadLetter) -> str | None:
    return next((ref.digest for ref in letter.artifacts if is_image(ref.media_type)), None)


def plain(payload: Any) -> Any:
    """JSON-safe as the CLI prints it (msgpack may carry bytes: shown as their repr)."""
    return json.loads(json.dumps(payload, default=str))


def letter_out(gw: Gateway, letter: DeadLetter, now: float) -> LetterOut:
    """The JSON shape of ``celery dlq show --json``, with image URLs."""
    artifacts = []
    for ref in letter.artifacts:
        try:
            path: str | None = gw.artifacts.locate(ref.digest)
        except (ArtifactMissing, OSError):
            path = None
        image = is_image(ref.media_type)
        artifacts.append(ArtifactOut(
            digest=ref.digest, size=ref.size, media_type=ref.media_type, path=path,
            url=image_url(letter.id, ref.digest) if image else None,
            thumbnail_url=thumbnail_url(letter.id, ref.digest) if image else None))
    first = first_image(letter)
    return LetterOut(
        id=letter.id, reason=letter.reason, state=letter.state, detail=letter.detail,
        session_key=letter.session_key, run_id=letter.run_id, fence=letter.fence,
        owner_run_id=letter.owner_run_id, owner_fence=letter.owner_fence, tool=letter.tool,
        task_id=letter.task_id, callback_id=letter.callback_id, kind=letter.kind,
        run_state=letter.run_state, submitted_at=letter.submitted_at,
        completed_at=letter.completed_at, quarantined_at=letter.quarantined_at,
        deadline_at=letter.deadline_at,
        age_seconds=None if letter.quarantined_at is None else now - letter.quarantined_at,
        payload=plain(letter.payload), payload_truncated=letter.payload_truncated,
        artifacts=artifacts,
        raw_base64=base64.b64encode(letter.raw).decode() if letter.raw else None,
        raw_size=letter.raw_size, claimed_session_key=letter.claimed_session_key,
        claimed_tool=letter.claimed_tool, redelivered_to=letter.redelivered_to,
        history=letter.history,
        thumbnail_url=None if first is None else thumbnail_url(letter.id, first))
