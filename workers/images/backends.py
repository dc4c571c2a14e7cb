"""What an image backend is and how one is chosen: the request (``ImageRequest``), the result
(``GeneratedImage``), the backend protocol (``Generator``) and the loader by name (built in:
``procedural.py`` and ``openai.py``; others through the ``leasegate.generators`` entry points).

A task builds an ``ImageRequest`` with ``ImageRequest.parse(**task_args)`` (``BadRequest``
names the bad field), picks a backend with ``load_generator(name, **options)`` and calls
``generator.generate(request, cancel)``. The task cancels through the ``CancelToken`` when the
run that asked is gone; backends check it between steps and raise ``Cancelled``.

Errors are the owned tasks' own (``leasegate.workers.tasks.errors``): ``BadRequest``,
``TransientError``, ``Cancelled``; ``GeneratorError`` is a backend that refused or answered
nonsense (retrying will not help).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ..tasks.errors import BadRequest, Cancelled, CancelToken, TaskError, TransientError

__all__ = [
    "BadRequest",
    "CancelToken",
    "Cancelled",
    "GeneratedImage",
    "Generator",
    "GeneratorError",
    "ImageRequest",
    "TransientError",
    "available_generators",
    "load_generator",
]

SIZES = ("256x256", "512x512", "1024x1024", "1024x1792", "1792x1024")
MAX_N = 4
MAX_PROMPT_CHARS = 4000
SEED_LIMIT = 2**32
ENTRY_POINT_GROUP = "leasegate.generators"
BUILTIN_GENERATORS = ("procedural", "openai")
_FIELDS = ("prompt", "size", "seed", "n")


class GeneratorError(TaskError):
    """The backend could not make the images; retrying the same request will not help."""


def _is_int(value: object) -> bool:
    # bool is an int subclass, but n=True or seed=False is a caller's mistake.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ImageRequest:
    """What to draw; validated on construction, so every instance is a valid request."""

    prompt: str
    size: str = "1024x1024"
    seed: int | None = None
    n: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise BadRequest("prompt", f"prompt must be a str, not {type(self.prompt).__name__}")
        if not self.prompt.strip():
            raise BadRequest("prompt", "prompt must not be empty or only whitespace")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise BadRequest("prompt", f"prompt has {len(self.prompt)} chars; "
                                       f"the limit is {MAX_PROMPT_CHARS}")
        if not isinstance(self.size, str) or self.size not in SIZES:
            raise BadRequest("size", f"size must be one of {', '.join(SIZES)}, "
                                     f"not {self.size!r:.40}")
        if not _is_int(self.n) or not 1 <= self.n <= MAX_N:
            raise BadRequest("n", f"n must be an int from 1 to {MAX_N}, not {self.n!r:.40}")
        if self.seed is not None and (not _is_int(self.seed)
                                      or not 0 <= self.seed < SEED_LIMIT):
            raise BadRequest("seed", f"seed must be None or an int from 0 to {SEED_LIMIT - 1}, "
                                     f"not {self.seed!r:.40}")

    @classmethod
    def parse(cls, **kwargs: object) -> ImageRequest:
        """Build from untrusted task arguments; BadRequest names the first bad field."""
        for key in kwargs:
            if key not in _FIELDS:
                raise BadRequest(key, f"unknown field {key!r:.40}; "
                                      f"the fields are {', '.join(_FIELDS)}")
        if "prompt" not in kwargs:
            raise BadRequest("prompt", "prompt is required")
        return cls(**kwargs)  # type: ignore[arg-type]  # __post_init__ checks every type

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])


@dataclass(frozen=True, kw_only=True)
class GeneratedImage:
    """One image: encoded bytes plus what the task reports about it."""

    data: bytes
    media_type: str = "image/png"
    width: int
    height: int
    seed: int | None  # the seed this image came from, None when the backend does not say


class Generator(Protocol):
    """An image backend. ``generate`` may block; it checks ``cancel`` between steps."""

    name: str

    def generate(self, request: ImageRequest, cancel: CancelToken) -> list[GeneratedImage]: ...


def available_generators() -> list[str]:
    """Built-in names first, then those of installed ``leasegate.generators`` entry points."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP).names
    return [*BUILTIN_GENERATORS, *sorted(found - set(BUILTIN_GENERATORS))]


def load_generator(name: str, **options: Any) -> Generator:
    """The backend called ``name``, built with ``options``; built-in names win over plugins."""
    # Imported here: both backends import this module.
    if name == "procedural":
        from .procedural import ProceduralGenerator

        return ProceduralGenerator(**options)
    if name == "openai":
        from .openai import OpenAIImagesGenerator

        return OpenAIImagesGenerator.from_env(**options)
    matches = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not matches:
        raise ValueError(f"unknown generator {name!r:.80}; available: "
                         f"{', '.join(available_generators())}")
    factory = next(iter(matches)).load()
    generator = factory(**options)
    if not callable(getattr(generator, "generate", None)):
        raise TypeError(f"entry point {name!r} in {ENTRY_POINT_GROUP} made "
                        f"{type(generator).__name__}, which has no generate()")
    return cast(Generator, generator)
