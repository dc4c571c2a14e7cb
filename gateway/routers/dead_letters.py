"""``/v1/dead-letters``: list, show, replay, discard one letter; its images and thumbnails.

Reads take an operator or a viewer, actions an operator. A request authenticated by the
console's cookie (not a bearer token) must echo its CSRF token in ``X-CSRF-Token``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from ...broker import (
    ArtifactCorrupt,
    ArtifactMissing,
    FilterError,
    LetterGone,
    ReplayRefused,
    select_letters,
)
from ..auth import check_csrf, operator, reader
from ..console_models import DiscardOut, LetterOut, LetterPage, ReplayBody, ReplayOut
from ..errors import ApiError, error_body
from ..letters import (
    RunRef,
    actor,
    as_api_error,
    check_letter_id,
    current_run,
    first_image,
    is_image,
    letter_filter,
    letter_out,
)
from ..state import Gateway, gateway
from ..thumbnails import MEDIA_TYPE, NotAnImage, thumbnail
from ..tokens import Token

router = APIRouter(tags=["dead letters"])
CACHE = "private, max-age=86400, immutable"   # a letter's artifacts never change


@router.get("/v1/dead-letters", response_model=LetterPage)
def list_letters(
    reason: str | None = None, kind: str | None = None, state: str | None = None,
    session: str | None = None, tool: str | None = None,
    since: str | None = Query(None, description="younger than: 90s, 30m, 2h, 7d"),
    cursor: str | None = None, limit: int = Query(50, ge=1, le=1000),
    gw: Gateway = Depends(gateway), _: Token = Depends(reader),  # noqa: B008
) -> LetterPage:
    where = letter_filter(gw, reason, kind, state, session, tool, since)
    try:
        page = select_letters(gw.client.dead_letters, where, limit, cursor or None)
    except FilterError as exc:
        raise as_api_error(exc) from None
    now = gw.client.server_time_ms() / 1000
    return LetterPage(letters=[letter_out(gw, x, now) for x in page.letters],
                      cursor=page.cursor)


@router.get("/v1/dead-letters/{letter_id}", response_model=LetterOut)
def show_letter(letter_id: str, gw: Gateway = Depends(gateway),  # noqa: B008
                _: Token = Depends(reader)) -> LetterOut:  # noqa: B008
    letter = gw.client.dead_letters.get(check_letter_id(letter_id))
    return letter_out(gw, letter, gw.client.server_time_ms() / 1000)


@router.post("/v1/dead-letters/{letter_id}/replay", response_model=ReplayOut,
             responses={409: {"description": "refused: error.reason says why"}})
def replay_letter(letter_id: str, body: ReplayBody, request: Request,
                  gw: Gateway = Depends(gateway),  # noqa: B008
                  token: Token = Depends(operator)) -> ReplayOut | JSONResponse:  # noqa: B008
    check_csrf(request, gw, request.headers.get("x-csrf-token"))
    if (body.run_id is None) == (not body.to_current):
        raise ApiError(422, "invalid", "give run_id or to_current: true (one of them)",
                       "run_id" if body.run_id is not None else "to_current")
    letters = gw.client.dead_letters
    letter = letters.get(check_letter_id(letter_id))
    if letter.kind == "error" and not body.force:
        return refused(letter_id, "error_kind", "it is kind=error, an error notice rather "
                       "than a result; pass force: true to hand it over anyway", "force")
    if letter.session_key is None:
        return refused(letter_id, "no_session", "undecodable input names no trusted session")
    run_id = body.run_id or current_run(gw, letter.session_key)
    if run_id is None:
        return refused(letter_id, "no_current_run",
                       f"session {letter.session_key!r} has no current run")
    try:
        done = letters.replay(letter_id, RunRef(letter.session_key, run_id), by=actor(token),
                              force=body.force)
    except ReplayRefused as exc:
        return refused(letter_id, exc.reason, exc.detail)
    return ReplayOut(id=letter_id, session_key=done.session_key, run_id=done.run_id,
                     entry_id=done.entry_id, seq=done.seq, resumed=done.resumed)


def refused(letter_id: str, reason: str, detail: str, field: str | None = None) -> JSONResponse:
    body = error_body("replay_refused", f"replay of dead letter {letter_id} refused: {reason}"
                      + (f" ({detail})" if detail else ""), field)
    body["error"]["reason"] = reason
    return JSONResponse(body, status_code=409)


@router.post("/v1/dead-letters/{letter_id}/discard", response_model=DiscardOut)
def discard_letter(letter_id: str, request: Request,
                   gw: Gateway = Depends(gateway),  # noqa: B008
                   token: Token = Depends(operator)) -> DiscardOut:  # noqa: B008
    check_csrf(request, gw, request.headers.get("x-csrf-token"))
    try:
        before = gw.client.dead_letters.discard(check_letter_id(letter_id), by=actor(token))
    except LetterGone as exc:
        raise ApiError(409, "gone", str(exc)) from None
    return DiscardOut(id=letter_id, previous_state=before, state="discarded")


def _image_digest(gw: Gateway, letter_id: str, digest: str | None) -> str:
    letter = gw.client.dead_letters.get(check_letter_id(letter_id))
    images = [ref.digest for ref in letter.artifacts if is_image(ref.media_type)]
    chosen = digest or first_image(letter)
    if chosen is None or chosen not in images:
        raise ApiError(404, "not_found", f"dead letter {letter_id} has no image"
                       + (f" {digest}" if digest else ""))
    return chosen


def _not_modified(request: Request, etag: str) -> Response | None:
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE})
    return None


@router.get("/v1/dead-letters/{letter_id}/image", response_class=Response,
            responses={200: {"content": {"image/*": {}}}})
def letter_image(letter_id: str, request: Request, digest: str | None = None,
                 gw: Gateway = Depends(gateway),  # noqa: B008
                 _: Token = Depends(reader)) -> Response:  # noqa: B008
    """The full image, as the worker stored it."""
    chosen = _image_digest(gw, letter_id, digest)
    etag = f'"{chosen}"'
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    letter = gw.client.dead_letters.get(letter_id)
    media_type = next(r.media_type for r in letter.artifacts if r.digest == chosen)
    try:
        data = gw.artifacts.get(chosen)
    except ArtifactMissing:
        raise ApiError(404, "artifact_missing", f"image {chosen} is not in the artifact store "
                       f"({gw.artifacts.root})") from None
    except ArtifactCorrupt as exc:
        raise ApiError(500, "artifact_corrupt", str(exc)) from None
    # an image only, never rendered as a page: no sniffing, no scripts even if it claims svg
    return Response(data, media_type=media_type, headers={
        "ETag": etag, "Cache-Control": CACHE, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})


@router.get("/v1/dead-letters/{letter_id}/thumbnail", response_class=Response,
            responses={200: {"content": {MEDIA_TYPE: {}}}})
def letter_thumbnail(letter_id: str, request: Request, digest: str | None = None,
                     gw: Gateway = Depends(gateway),  # noqa: B008
                     _: Token = Depends(reader)) -> Response:  # noqa: B008
    """A WebP of at most 256 px a side and 64 KiB, made once and kept beside the image."""
    chosen = _image_digest(gw, letter_id, digest)
    etag = f'"thumb-{chosen}"'
    if (cached := _not_modified(request, etag)) is not None:
        return cached
    try:
        path = thumbnail(gw.artifacts, chosen)
    except ArtifactMissing:
        raise ApiError(404, "artifact_missing", f"image {chosen} is not in the artifact store "
                       f"({gw.artifacts.root})") from None
    except (ArtifactCorrupt, NotAnImage) as exc:
        raise ApiError(422, "not_an_image", f"image {chosen}: {exc}") from None
    return FileResponse(path, media_type=MEDIA_TYPE, headers={
        "ETag": etag, "Cache-Control": CACHE, "X-Content-Type-Options": "nosniff"})
