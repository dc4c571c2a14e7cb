"""image_generate: the first owned media tool."""

from __future__ import annotations

from typing import Any

from .generators import ImageRequest
from .owned import OwnedContext, OwnedResult

TASK_NAME = "leasegate.image_generate"


def image_generate(ctx: OwnedContext, prompt: str = "", size: str = "1024x1024",
                   seed: int | None = None, n: int = 1, **extra: Any) -> OwnedResult:
    """Generate ``n`` PNG images; bad requests fail fast as a kind=error callback."""
    request = ImageRequest.parse(prompt=prompt, size=size, seed=seed, n=n, **extra)
    ctx.checkpoint()
    images = ctx.generator.generate(request, ctx.cancel)
    return OwnedResult(
        payload={
            "tool": "image_generate",
            "prompt": request.prompt,
            "size": request.size,
            "generator": ctx.generator.name,
            "images": [{"width": i.width, "height": i.height, "seed": i.seed,
                        "media_type": i.media_type} for i in images],
        },
        files=[(i.data, i.media_type) for i in images],
    )
