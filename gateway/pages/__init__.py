"""The console's pages: server-rendered Jinja2 templates and one small stylesheet and script,
no front-end build. Every page reads through the same code as the JSON API."""

from __future__ import annotations

from fastapi import APIRouter

from . import assets, letters, login, redrive, runs

PAGE_ROUTERS: list[APIRouter] = [login.router, letters.router, redrive.router, runs.router,
                                 assets.router]

__all__ = ["PAGE_ROUTERS"]
