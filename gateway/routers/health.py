"""``GET /healthz``: the process is up and Redis answers (no token needed: load balancers)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..state import Gateway, gateway

router = APIRouter(tags=["health"])


class Health(BaseModel):
    ok: bool
    namespace: str
    server_time_ms: int


@router.get("/healthz", response_model=Health, operation_id="healthz")
def healthz(gw: Gateway = Depends(gateway)) -> Health:  # noqa: B008
    return Health(ok=True, namespace=gw.client.keys.namespace,
                  server_time_ms=gw.client.server_time_ms())
