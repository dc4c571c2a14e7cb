"""One router per resource; ``create_app`` mounts every router listed in ``ROUTERS``."""

from __future__ import annotations

from fastapi import APIRouter

from ..pages import PAGE_ROUTERS
from . import artifacts, dead_letters, events, health, inbox, redrives, runs, tasks, whoami

ROUTERS: list[APIRouter] = [health.router, whoami.router]
# the runtime API
ROUTERS += [runs.router, tasks.router, inbox.router, events.router, artifacts.router]
# the operator console: its JSON API, then its pages
ROUTERS += [dead_letters.router, redrives.router, *PAGE_ROUTERS]
