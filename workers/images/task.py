"""image_generate: the first owned media tool."""

from __future__ import annotations

from typing import Any

from ...broker import IMAGE_GENERATE
from ..tasks import OwnedContext, OwnedResult, WorkerRuntime
from .backends import Generator, ImageRequest, load_generator

TASK_NAME = IMAGE_GENERATE.task


def _load(runtime: WorkerRuntime) -> Generator:
    config = runtime.config
    options: dict[str, Any] = {}
    if config.generator == "procedural":
        options["latency"] = config.generator_latency
    return load_generator(config.generator, **options)


def generator_of(runtime: WorkerRuntime) -> Generator:
    """The process's image backend (LEASEGATE_GENERATOR), loaded once per process."""
    return runtime.resource("image_generator", _load)


def image_generate(ctx: OwnedContext, prompt: str = "", size: str = "1024x1024",
                   seed: int | None = None, n: int = 1, **extra: Any) -> OwnedResult:
    """Generate ``n`` PNG images; bad requests fail fast as a kind=error callback."""
    request = ImageRequest.parse(prompt=prompt, size=size, seed=seed, n=n, **extra)
    ctx.checkpoint()
    generator = generator_of(ctx.runtime)
    images = generator.generate(request, ctx.cancel)
    return OwnedResult(
        payload={
            "tool": "image_generate",
            "prompt": request.prompt,
            "size": request.size,
            "generator": generator.name,
            "images": [{"width": i.width, "height": i.height, "seed": i.seed,
                        "media_type": i.media_type} for i in images],
        },
        files=[(i.data, i.media_type) for i in images],
    )
