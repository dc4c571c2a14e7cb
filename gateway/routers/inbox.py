"""``GET /v1/runs/{run}/inbox``: a page of a run's inbox, entry 1 its prompt, then the tool
callbacks in delivery order. Readable after the run ended, until its retention runs out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ..entries import entry_body
from ..runs import CallerRun, caller_run
from ..runtime_models import InboxPage, errors

router = APIRouter(tags=["inbox"])

MAX_PAGE = 1000


@router.get("/v1/runs/{run}/inbox", response_model=InboxPage, operation_id="readInbox",
            responses=errors(401, 403, 404, 422, 503))
def read_inbox(after: int = Query(0, ge=0, description="entries with seq > after"),
               limit: int = Query(100, ge=1, le=MAX_PAGE),
               target: CallerRun = Depends(caller_run)) -> InboxPage:  # noqa: B008
    entries = target.run.inbox.read(after=after, count=limit)
    return InboxPage(entries=[entry_body(e, target.ref) for e in entries],
                     next_after=entries[-1].seq if entries else after)
