"""``POST /v1/runs/{run}/tasks``: submit an owned background task for a run; the gateway signs
its envelope, so the runtime never holds the secret. Everything is checked before Redis."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends

from ...broker import Client, check_callback_id
from ..errors import ApiError
from ..runs import CallerRun, caller_run
from ..runtime_models import SubmitTask, TaskAccepted, errors
from .runs import checked

router = APIRouter(tags=["tasks"])

MAX_ARGS_BYTES = 64 * 1024
RESERVED_ARGS = ("deadline", "queue", "callback_id", "tool")  # Run.submit's own keywords


def check_task(body: SubmitTask, client: Client, max_deadline: float) -> None:
    """Every refusal a submit can meet before it reaches Redis, naming field and limit."""
    if body.tool not in client.tasks:
        raise ApiError(422, "unknown_tool", f"tool {body.tool!r} is not known here; known "
                       f"tools: {', '.join(sorted(client.tasks))}", "tool")
    limit = min(max_deadline, client.settings.max_deadline)
    if not body.deadline <= limit:
        raise ApiError(422, "invalid", f"deadline is {body.deadline} s; the maximum "
                       f"(LEASEGATE_MAX_DEADLINE) is {limit:g} s", "deadline")
    if body.callback_id is not None:
        checked("callback_id", check_callback_id, body.callback_id)
    for name in RESERVED_ARGS:
        if name in body.args:
            raise ApiError(422, "invalid", f"args.{name} is reserved: pass it at the top "
                           "level of the request, not inside args", f"args.{name}")
    size = len(json.dumps(body.args, separators=(",", ":")).encode())
    if size > MAX_ARGS_BYTES:
        raise ApiError(422, "invalid", f"args is {size} bytes as JSON; the limit is "
                       f"{MAX_ARGS_BYTES} bytes", "args")


@router.post("/v1/runs/{run}/tasks", status_code=202, response_model=TaskAccepted,
             operation_id="submitTask", responses=errors(401, 403, 404, 409, 413, 422, 503))
def submit_task(body: SubmitTask,
                target: CallerRun = Depends(caller_run)) -> TaskAccepted:  # noqa: B008
    """Send ``tool`` as a Celery task owned by this run. Its result lands in the run's inbox
    while the run is live or parked, else in the dead letters. 409 ``lease_lost`` (with
    error.reason) when the run is no longer current; 409 ``callback_id_used`` for an id this
    run already used."""
    gw = target.gw
    check_task(body, gw.client, gw.settings.worker.max_deadline)
    try:
        callback_id = target.run.submit(body.tool, deadline=body.deadline,
                                        callback_id=body.callback_id, **body.args)
    except ValueError as exc:  # everything else was checked above: the id is taken
        raise ApiError(409, "callback_id_used", str(exc), "callback_id") from None
    return TaskAccepted(callback_id=callback_id)
