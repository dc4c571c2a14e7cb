"""One router per resource; ``create_app`` mounts every router listed in ``ROUTERS``."""

from __future__ import annotations

from fastapi import APIRouter

from ..pages import PAGE_ROUTERS
from . import dead_letters, health, redrives, whoami

ROUTERS: list[APIRouter] = [health.router, whoami.router, dead_letters.router, redrives.router,
                            *PAGE_ROUTERS]
