"""The built-in backend: a deterministic picture drawn with Pillow, no network or GPU.

The picture (gradient, shapes, colours) comes from sha256 of (seed, prompt), with the prompt
and seed written on it so a person can tell which request made it. Same inputs, same PNG
bytes. An optional simulated latency is spread over ``steps`` cancellation checkpoints.
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

from .backends import (
    SEED_LIMIT,
    CancelToken,
    GeneratedImage,
    ImageRequest,
)

CANVAS = 512  # long side of the canvas the shapes are drawn on, then scaled up: keeps it fast
MAX_TEXT_LINES = 4
PNG_COMPRESS_LEVEL = 1  # large flat areas compress well even at 1, and 6 is several times slower

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]


class ProceduralGenerator:
    """Draws ``n`` pictures with seeds seed, seed+1, ... (seed None: one from the prompt)."""

    name = "procedural"

    def __init__(self, latency: float = 0.0, steps: int = 10) -> None:
        if not isinstance(latency, int | float) or not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, not {latency!r}")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, not {steps!r}")
        self.latency = float(latency)
        self.steps = steps

    def __repr__(self) -> str:
        return f"ProceduralGenerator(latency={self.latency}, steps={self.steps})"

    def generate(self, request: ImageRequest, cancel: CancelToken) -> list[GeneratedImage]:
        cancel.raise_if_cancelled()
        for step in range(self.steps):
            self.checkpoint(step, cancel)
        first = request.seed if request.seed is not None else prompt_seed(request.prompt)
        images = []
        for i in range(request.n):
            cancel.raise_if_cancelled()
            seed = (first + i) % SEED_LIMIT
            data = render_png(request.prompt, seed, request.width, request.height)
            images.append(GeneratedImage(data=data, width=request.width,
                                         height=request.height, seed=seed))
        return images

    def checkpoint(self, step: int, cancel: CancelToken) -> None:
        """One slice of the simulated latency; raises Cancelled once the token fires."""
        cancel.wait(self.latency / self.steps)
        cancel.raise_if_cancelled()


def prompt_seed(prompt: str) -> int:
    """The seed used when the request has none: stable for the same prompt."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")


class _Dice:
    """Numbers from a sha256 counter stream: unlike random.Random, stable across Pythons."""

    def __init__(self, prompt: str, seed: int) -> None:
        self._key = hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()
        self._pool = b""
        self._counter = 0

    def below(self, limit: int) -> int:
        if len(self._pool) < 4:
            self._counter += 1
            self._pool += hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
        value, self._pool = int.from_bytes(self._pool[:4], "big"), self._pool[4:]
        return value % limit

    def colour(self) -> RGB:
        return (self.below(256), self.below(256), self.below(256))


def render_png(prompt: str, seed: int, width: int, height: int) -> bytes:
    """The PNG for (prompt, seed) at width x height; no metadata, so the bytes are stable."""
    dice = _Dice(prompt, seed)
    scale = CANVAS / max(width, height)
    small = _background(dice, max(1, round(width * scale)), max(1, round(height * scale)))
    _draw_shapes(dice, small)
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    _draw_caption(image, prompt, seed)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()


def _background(dice: _Dice, width: int, height: int) -> Image.Image:
    style = dice.below(5)
    ramp = Image.radial_gradient("L") if style == 4 else Image.linear_gradient("L")
    ramp = ramp.rotate(90 * style) if style < 4 else ramp  # top-down, left-right, ...
    tinted = ImageOps.colorize(ramp, dice.colour(), dice.colour())
    return tinted.resize((width, height), Image.Resampling.BILINEAR)


def _draw_shapes(dice: _Dice, image: Image.Image) -> None:
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA draw on an RGB image blends the fills
    width, height = image.size
    short = min(width, height)
    for _ in range(5 + dice.below(5)):
        cx, cy = dice.below(width), dice.below(height)
        r = short // 10 + dice.below(max(1, short * 3 // 10))
        fill = (*dice.colour(), 140 + dice.below(100))
        outline = (*dice.colour(), 255)
        box = (cx - r, cy - r, cx + r, cy + r)
        kind = dice.below(3)
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=2)
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=2)
        else:
            turn = dice.below(360)
            draw.regular_polygon((cx, cy, r), 3, rotation=turn, fill=fill, outline=outline)


def _draw_caption(image: Image.Image, prompt: str, seed: int) -> None:
    width, height = image.size
    px = max(11, min(width, height) // 24)
    font, small = _font(px), _font(max(10, px * 2 // 3))
    margin = px // 2
    draw = ImageDraw.Draw(image, "RGBA")
    lines = _wrap(prompt, font, width - 4 * margin)
    line_height = px * 6 // 5
    top = height - 2 * margin - line_height * len(lines)
    draw.rectangle((0, top, width, height), fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((2 * margin, top + margin + i * line_height), line, font=font,
                  fill=(255, 255, 255, 255))
    label = f"seed {seed}"
    draw.rectangle((0, 0, 2 * margin + small.getlength(label), margin + px), fill=(0, 0, 0, 150))
    draw.text((margin, margin // 2), label, font=small, fill=(255, 255, 255, 255))


@lru_cache(maxsize=16)
def _font(px: int) -> Font:
    return ImageFont.load_default(size=px)  # Pillow's bundled font; bitmap without FreeType


def _wrap(prompt: str, font: Font, max_width: float) -> list[str]:
    """At most MAX_TEXT_LINES lines that fit max_width, ending in '...' when cut short."""
    # Control characters would draw as boxes or break lines; the prompt is shown flattened.
    text = " ".join("".join(c if c.isprintable() else " " for c in prompt).split())
    chars = max(4, int(max_width / max(1.0, font.getlength("n"))))
    while True:
        lines = textwrap.wrap(text, width=chars, max_lines=MAX_TEXT_LINES, placeholder=" ...")
        if chars <= 4 or all(font.getlength(line) <= max_width for line in lines):
            return lines
        chars = chars * 9 // 10  # wide letters overflowed: try narrower lines
