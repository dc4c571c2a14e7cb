"""One router per resource; ``create_app`` mounts every router listed in ``ROUTERS``."""

from __future__ import annotations

from fastapi import APIRouter

from . import artifacts, events, health, inbox, runs, tasks, whoami

ROUTERS: list[APIRouter] = [health.router, whoami.router]
# the runtime API
ROUTERS += [runs.router, tasks.router, inbox.router, events.router,
            artifacts.router]
