"""Lua scripts: one file per atomic operation, loaded once and called by SHA.

A script may pull shared functions in with a line ``-- @include "name"``; the loader
splices ``includes/name.lua`` in place (the way BullMQ builds its commands).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis

INCLUDE = re.compile(r'^-- @include "([\w-]+)"\s*$', re.MULTILINE)
OWN_INCLUDES = Path(__file__).parent / "includes"


def render(path: Path, include_dirs: tuple[Path, ...] = ()) -> str:
    """The script's source with every include spliced in, each once."""
    seen: set[str] = set()
    dirs = (*include_dirs, path.parent / "includes", OWN_INCLUDES)

    def splice(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        for folder in dirs:
            candidate = folder / f"{name}.lua"
            if candidate.is_file():
                return INCLUDE.sub(splice, candidate.read_text())
        raise FileNotFoundError(f"Lua include {name!r} of {path.name} not found in {dirs}")

    return INCLUDE.sub(splice, path.read_text())


class Scripts:
    """The scripts of one folder, registered on one client.

    redis-py's ``Script`` calls EVALSHA and falls back to SCRIPT LOAD on NOSCRIPT, so each
    script crosses the wire once per server (again only after a restart or SCRIPT FLUSH).
    """

    def __init__(self, client: redis.Redis, folder: Path) -> None:
        self._scripts: dict[str, Any] = {}
        for path in sorted(folder.glob("*.lua")):
            name = path.stem.rsplit("-", 1)[0]  # 'acquire-3' -> 'acquire'
            self._scripts[name] = client.register_script(render(path))

    def __call__(
        self, name: str, keys: list[str], args: list[Any], client: Any = None
    ) -> Any:
        return self._scripts[name](keys=keys, args=args, client=client)
