"""The dependency behind every ``/v1/runs/{run}`` route: the caller's run, from its ref, after
the token's role and session prefixes are checked (no Redis touched on a refusal)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends
from fastapi import Path as PathParam

from ..broker import Run
from .auth import check_session, runtime
from .runref import RunRef, decode
from .state import Gateway, gateway
from .tokens import Token

RUN_PATH = PathParam(description="the opaque run ref POST /v1/runs answered with",
                     max_length=4096)


@dataclass(frozen=True)
class CallerRun:
    ref: str        # as the caller gave it: echoed back, never re-encoded
    run_ref: RunRef
    run: Run
    gw: Gateway


def caller_run(run: str = RUN_PATH, token: Token = Depends(runtime),  # noqa: B008
               gw: Gateway = Depends(gateway)) -> CallerRun:  # noqa: B008
    found = decode(run, gw.client.secrets)
    check_session(token, found.session_key, "run")
    return CallerRun(run, found, found.run(gw.client), gw)
