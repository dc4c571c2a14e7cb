"""``GET|POST /v1/whoami``: the caller's token name, role and session prefixes (a client
checks its credentials with it before doing anything)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..auth import caller
from ..tokens import Token

router = APIRouter(tags=["auth"])


class Identity(BaseModel):
    name: str
    role: str
    sessions: list[str]


@router.get("/v1/whoami", response_model=Identity, operation_id="whoami")
@router.post("/v1/whoami", response_model=Identity, operation_id="whoamiPost")
def whoami(token: Token = Depends(caller)) -> Identity:  # noqa: B008
    return Identity(name=token.name, role=token.role.value, sessions=list(token.sessions))
