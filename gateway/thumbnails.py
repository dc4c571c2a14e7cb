"""Thumbnails of artifact images: made once with Pillow, kept beside the artifact as
``<digest>.thumb.webp`` (at most 64 KiB), so every ``serve`` process on the same artifact
volume finds the one another made.

The artifact collector knows nothing of these files: a thumbnail outlives its artifact until
the shard folder is cleaned (see docs/console.md)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..broker import ArtifactStore

MAX_BYTES = 64 * 1024
SIDE = 256                 # longest side in pixels
MAX_SOURCE_PIXELS = 64_000_000   # a larger "image" is refused, not decoded
QUALITIES = (80, 65, 50, 35, 20)
SUFFIX = ".thumb.webp"
MEDIA_TYPE = "image/webp"


class NotAnImage(ValueError):
    """The artifact's bytes are not an image Pillow can read (or are far too large)."""


def thumbnail_path(store: ArtifactStore, digest: str) -> Path:
    return Path(store.locate(digest)).with_name(digest + SUFFIX)


def thumbnail(store: ArtifactStore, digest: str) -> Path:
    """The thumbnail's file, made now if it is not there. ``ArtifactMissing`` without the
    artifact, ``ArtifactCorrupt`` if it does not hash, ``NotAnImage``."""
    path = thumbnail_path(store, digest)
    if path.is_file():
        return path
    data = render(store.get(digest))
    fd, temp = tempfile.mkstemp(prefix=".tmp-thumb-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchmod(file.fileno(), 0o644)
        os.replace(temp, path)   # two processes making it at once: the last rename wins, same
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def render(source: bytes, side: int = SIDE, limit: int = MAX_BYTES) -> bytes:
    """A WebP of at most ``side`` pixels a side and ``limit`` bytes."""
    try:
        with Image.open(io.BytesIO(source)) as image:
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise NotAnImage(f"{image.width}x{image.height} is over {MAX_SOURCE_PIXELS} "
                                 "pixels")
            image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale
            small = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise NotAnImage(str(exc)) from None
    while True:
        small.thumbnail((side, side))
        for quality in QUALITIES:
            out = io.BytesIO()
            small.save(out, "WEBP", quality=quality, method=4)
            if out.tell() <= limit:
                return out.getvalue()
        side //= 2   # a noisy picture: fewer pixels until it fits
