"""``/static/<name>``: the console's stylesheet and script, from the package, cached a day."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..errors import ApiError

router = APIRouter(include_in_schema=False)
FOLDER = Path(__file__).parent / "static"
TYPES = {".css": "text/css", ".js": "text/javascript"}


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    path = FOLDER / name
    if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
        raise ApiError(404, "not_found", f"no static file {name[:80]!r}")
    return FileResponse(path, media_type=TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=86400"})
