"""``GET /v1/artifacts/{digest}``: an image, to a token allowed to see an inbox entry or a dead
letter that references it; byte ranges supported (206). Never a path on disk in a response.

A runtime token names the run whose inbox references the digest (``?run=<ref>``, the link
every inbox entry carries); operators and viewers may also name a dead letter
(``?letter=<id>``) or nothing (they can read every inbox and letter anyway)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from ...broker import ArtifactMissing, ArtifactRef, Entry, check_digest
from ..auth import caller, check_session
from ..errors import ApiError
from ..runref import decode
from ..runtime_models import errors
from ..state import Gateway, gateway
from ..tokens import Role, Token

router = APIRouter(tags=["artifacts"])

MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
         (b"GIF8", "image/gif"))
NOT_FOUND = "no artifact {digest} that this token may see"


def _missing(digest: str) -> ApiError:
    return ApiError(404, "artifact_not_found", NOT_FOUND.format(digest=digest), "digest")


def _in_inbox(gw: Gateway, run: str, digest: str, token: Token) -> ArtifactRef | None:
    ref = decode(run, gw.client.secrets)
    if token.role is Role.RUNTIME:
        check_session(token, ref.session_key, "run")
    rows: Any = gw.client.redis.xrange(gw.client.keys.inbox(ref.session_key, ref.run_id))
    for entry_id, fields in rows:
        for art in Entry.from_stream(entry_id, fields).artifacts:
            if art.digest == digest:
                return art
    return None


def _in_letter(gw: Gateway, letter: str, digest: str) -> ArtifactRef | None:
    return next((a for a in gw.client.dead_letters.get(letter).artifacts
                 if a.digest == digest), None)


def _sniffed(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    found = next((kind for magic, kind in MAGIC if head.startswith(magic)), None)
    if found is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        found = "image/webp"
    return found or "application/octet-stream"


@router.get("/v1/artifacts/{digest}", operation_id="fetchArtifact",
            response_class=FileResponse,
            responses={200: {"description": "the bytes (Range: bytes=... answers 206)",
                             "content": {"image/png": {"schema": {"type": "string",
                                                                  "format": "binary"}}}},
                       206: {"description": "the requested byte range"},
                       **errors(401, 403, 404, 422, 503)})
def fetch_artifact(digest: str, run: str | None = Query(None, max_length=4096, description=(
                       "the run ref whose inbox references it (runtime tokens: required)")),
                   letter: str | None = Query(None, max_length=128, description=(
                       "a dead letter that references it (operator or viewer)")),
                   token: Token = Depends(caller),  # noqa: B008
                   gw: Gateway = Depends(gateway)) -> FileResponse:  # noqa: B008
    try:
        check_digest(digest)
    except ValueError as exc:
        raise ApiError(422, "invalid", str(exc), "digest") from None
    reader = token.role in (Role.OPERATOR, Role.VIEWER)
    found: ArtifactRef | None = None
    if run is not None:
        found = _in_inbox(gw, run, digest, token)
    elif letter is not None and reader:
        found = _in_letter(gw, letter, digest)
    elif not reader:
        raise _missing(digest)  # a runtime token sees only what its runs' inboxes reference
    if found is None and (run is not None or letter is not None):
        raise _missing(digest)
    try:
        path = gw.artifacts.locate(digest)
    except ArtifactMissing:
        raise _missing(digest) from None
    media_type = found.media_type if found else _sniffed(path)
    # no filename: no Content-Disposition, so the path on disk never leaves the process
    return FileResponse(path, media_type=media_type,
                        headers={"Cache-Control": "private, max-age=86400, immutable"})
