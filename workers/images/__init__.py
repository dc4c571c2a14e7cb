"""The image_generate tool: its owned task and its backends (procedural, OpenAI-compatible,
and any registered under the ``leasegate.generators`` entry point group)."""

from .backends import (
    GeneratedImage,
    Generator,
    GeneratorError,
    ImageRequest,
    available_generators,
    load_generator,
)
from .task import TASK_NAME, generator_of, image_generate

__all__ = [
    "TASK_NAME",
    "GeneratedImage",
    "Generator",
    "GeneratorError",
    "ImageRequest",
    "available_generators",
    "generator_of",
    "image_generate",
    "load_generator",
]
