"""Image generation interface: request validation, the cancel token, the procedural backend
and backends by name (built in and through the ``leasegate.generators`` entry point group)."""

from __future__ import annotations

import io
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from leasegate.workers.images.backends import (
    MAX_N,
    MAX_PROMPT_CHARS,
    SEED_LIMIT,
    SIZES,
    BadRequest,
    Cancelled,
    CancelToken,
    ImageRequest,
    available_generators,
    load_generator,
)
from leasegate.workers.images.openai import OpenAIImagesGenerator
from leasegate.workers.images.procedural import ProceduralGenerator, prompt_seed, render_png
from leasegate.workers.tasks import TaskError

PROMPT = "a red fox in the snow"


def generate(prompt: str = PROMPT, **kwargs: Any) -> list[bytes]:
    images = ProceduralGenerator().generate(ImageRequest.parse(prompt=prompt, **kwargs),
                                            CancelToken())
    return [image.data for image in images]


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        chunks.append(kind)
        at += 12 + length
    return chunks


# -- request validation ------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "field", "fragment"), [
    ({"prompt": ""}, "prompt", "empty"),
    ({"prompt": " \n\t"}, "prompt", "empty"),
    ({"prompt": None}, "prompt", "str"),
    ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", str(MAX_PROMPT_CHARS)),
    ({}, "prompt", "required"),
    ({"prompt": PROMPT, "size": "300x300"}, "size", ", ".join(SIZES)),
    ({"prompt": PROMPT, "size": [1024, 1024]}, "size", "1024x1024"),
    ({"prompt": PROMPT, "n": 0}, "n", f"1 to {MAX_N}"),
    ({"prompt": PROMPT, "n": MAX_N + 1}, "n", f"1 to {MAX_N}"),
    ({"prompt": PROMPT, "n": "2"}, "n", "int"),
    ({"prompt": PROMPT, "n": 2.0}, "n", "int"),
    ({"prompt": PROMPT, "n": True}, "n", "int"),
    ({"prompt": PROMPT, "seed": -1}, "seed", str(SEED_LIMIT - 1)),
    ({"prompt": PROMPT, "seed": SEED_LIMIT}, "seed", str(SEED_LIMIT - 1)),
    ({"prompt": PROMPT, "seed": "7"}, "seed", "int"),
    ({"prompt": PROMPT, "seed": 1.5}, "seed", "int"),
    ({"prompt": PROMPT, "seed": False}, "seed", "int"),
    ({"prompt": PROMPT, "style": "vivid"}, "style", "prompt, size, seed, n"),
])
def test_bad_request_names_the_field_and_the_limit(kwargs: dict[str, Any], field: str,
                                                   fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        ImageRequest.parse(**kwargs)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert fragment in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TaskError)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(BadRequest, match="size"):
        ImageRequest(PROMPT, size="2x2")


def test_valid_requests_and_limits() -> None:
    request = ImageRequest.parse(prompt=PROMPT)
    assert request == ImageRequest(PROMPT, "1024x1024", None, 1)
    wide = ImageRequest.parse(prompt="x" * MAX_PROMPT_CHARS, size="1792x1024", n=MAX_N,
                              seed=SEED_LIMIT - 1)
    assert (wide.width, wide.height, wide.n, wide.seed) == (1792, 1024, MAX_N, SEED_LIMIT - 1)
    assert ImageRequest.parse(prompt=PROMPT, seed=0, size="1024x1792").height == 1792


# -- cancel token ----------------------------------------------------------------------------

def test_cancel_token() -> None:
    token = CancelToken()
    assert not token.cancelled and token.reason is None
    assert token.wait(0.01) is False
    token.raise_if_cancelled()
    token.cancel("owner gone")
    token.cancel("later reason")
    assert token.cancelled and token.reason == "owner gone"
    assert token.wait(60) is True  # returns at once
    with pytest.raises(Cancelled, match="owner gone") as caught:
        token.raise_if_cancelled()
    assert caught.value.reason == "owner gone"


def test_cancel_wakes_a_waiter_in_another_thread() -> None:
    token = CancelToken()
    woke: list[bool] = []
    started = threading.Event()

    def sleeper() -> None:
        started.set()
        woke.append(token.wait(30))

    thread = threading.Thread(target=sleeper)
    thread.start()
    started.wait(5)
    began = time.monotonic()
    token.cancel("stop")
    thread.join(5)
    assert woke == [True]
    assert time.monotonic() - began < 2


# -- procedural backend ---------------------------------------------------------------------

def test_procedural_is_deterministic() -> None:
    first = generate(seed=7, size="256x256")
    assert generate(seed=7, size="256x256") == first
    assert generate(seed=8, size="256x256") != first
    assert generate("a blue fox in the snow", seed=7, size="256x256") != first


def test_procedural_without_seed_derives_it_from_the_prompt() -> None:
    images = ProceduralGenerator().generate(ImageRequest(PROMPT, "256x256"), CancelToken())
    assert images[0].seed == prompt_seed(PROMPT)
    assert [i.data for i in images] == generate(size="256x256")
    assert images[0].data == render_png(PROMPT, prompt_seed(PROMPT), 256, 256)


@pytest.mark.parametrize("size", SIZES)
def test_procedural_png_has_the_requested_size(size: str) -> None:
    request = ImageRequest(PROMPT, size, seed=1)
    [image] = ProceduralGenerator().generate(request, CancelToken())
    assert (image.width, image.height, image.media_type) == (request.width, request.height,
                                                             "image/png")
    with Image.open(io.BytesIO(image.data)) as opened:
        assert opened.format == "PNG"
        assert opened.size == (request.width, request.height)
        opened.load()
    # No tIME, tEXt or pHYs chunks: nothing but pixels, so equal inputs give equal bytes.
    assert set(png_chunks(image.data)) <= {b"IHDR", b"IDAT", b"IEND"}


def test_procedural_n_images_use_consecutive_seeds() -> None:
    request = ImageRequest(PROMPT, "256x256", seed=SEED_LIMIT - 2, n=3)
    images = ProceduralGenerator().generate(request, CancelToken())
    assert [i.seed for i in images] == [SEED_LIMIT - 2, SEED_LIMIT - 1, 0]  # wraps around
    assert len({i.data for i in images}) == 3
    assert images[1].data == generate(seed=SEED_LIMIT - 1, size="256x256")[0]


def test_procedural_draws_long_and_odd_prompts() -> None:
    odd = "W" * 300 + " \x00\x1b[31m 狐 🦊 " + "mm " * 2000
    [data] = generate(odd[:MAX_PROMPT_CHARS], seed=3, size="256x256")
    with Image.open(io.BytesIO(data)) as opened:
        assert opened.size == (256, 256)


def test_procedural_is_fast() -> None:
    best = 1e9
    for _ in range(3):
        began = time.perf_counter()
        render_png(PROMPT * 20, 5, 1792, 1024)
        best = min(best, time.perf_counter() - began)
    assert best < 0.5  # about 0.06 s here; the bound only catches gross regressions


class CountingGenerator(ProceduralGenerator):
    """Counts finished checkpoints and signals the first one."""

    def __init__(self, latency: float, steps: int) -> None:
        super().__init__(latency=latency, steps=steps)
        self.finished = 0
        self.first = threading.Event()

    def checkpoint(self, step: int, cancel: CancelToken) -> None:
        super().checkpoint(step, cancel)
        self.finished += 1
        self.first.set()


def test_cancel_stops_the_simulated_latency_within_a_step() -> None:
    generator = CountingGenerator(latency=10.0, steps=50)  # 0.2 s a step
    token = CancelToken()

    def canceller() -> None:
        if generator.first.wait(10):
            token.cancel("owner gone")

    thread = threading.Thread(target=canceller)
    thread.start()
    began = time.monotonic()
    try:
        with pytest.raises(Cancelled, match="owner gone"):
            generator.generate(ImageRequest(PROMPT, "256x256"), token)
    finally:
        token.cancel("test over")  # frees the canceller if the generator failed early
        thread.join(5)
    assert 1 <= generator.finished < generator.steps
    assert time.monotonic() - began < 2.0  # vs 10 s uncancelled


def test_latency_is_spread_over_the_steps() -> None:
    generator = CountingGenerator(latency=0.2, steps=4)
    began = time.monotonic()
    [image] = generator.generate(ImageRequest(PROMPT, "256x256", seed=1), CancelToken())
    assert generator.finished == 4
    assert time.monotonic() - began >= 0.2
    assert image.data == generate(seed=1, size="256x256")[0]


def test_cancelled_before_start_runs_no_step() -> None:
    generator = CountingGenerator(latency=0.0, steps=3)
    token = CancelToken()
    token.cancel("too late")
    with pytest.raises(Cancelled, match="too late"):
        generator.generate(ImageRequest(PROMPT), token)
    assert generator.finished == 0


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"latency": -1.0}, "latency"), ({"latency": float("inf")}, "latency"),
    ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
])
def test_procedural_options_are_checked(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ProceduralGenerator(**kwargs)


# -- backends by name ------------------------------------------------------------------------

def test_load_builtin_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    procedural = load_generator("procedural", latency=0.5, steps=5)
    assert isinstance(procedural, ProceduralGenerator)
    assert (procedural.name, procedural.latency, procedural.steps) == ("procedural", 0.5, 5)
    monkeypatch.setenv("LEASEGATE_OPENAI_API_KEY", "sk-from-env")
    openai = load_generator("openai", base_url="http://127.0.0.1:9/v1", max_retries=0)
    assert isinstance(openai, OpenAIImagesGenerator)
    assert (openai.name, openai.base_url, openai.max_retries) == ("openai",
                                                                  "http://127.0.0.1:9/v1", 0)


def test_unknown_generator_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match="unknown generator 'dalle'") as caught:
        load_generator("dalle")
    assert "procedural, openai" in str(caught.value)


PLUGIN = '''
from leasegate.workers.images.backends import GeneratedImage


class Echo:
    name = "echo"

    def __init__(self, colour="red"):
        self.colour = colour

    def generate(self, request, cancel):
        return [GeneratedImage(data=self.colour.encode(), width=1, height=1, seed=None)]


def not_a_generator(**options):
    return object()
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real installed distribution on sys.path, found by importlib.metadata's own lookup."""
    (tmp_path / "leasegate_echo_plugin.py").write_text(PLUGIN)
    info = tmp_path / "leasegate_echo_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leasegate-echo-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[leasegate.generators]\n"
        "echo = leasegate_echo_plugin:Echo\n"
        "broken = leasegate_echo_plugin:not_a_generator\n"
        "procedural = leasegate_echo_plugin:Echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("leasegate_echo_plugin", None)


def test_entry_point_generator(plugin: Path) -> None:
    generator = load_generator("echo", colour="blue")
    assert generator.name == "echo"
    [image] = generator.generate(ImageRequest(PROMPT), CancelToken())
    assert image.data == b"blue"
    assert available_generators() == ["procedural", "openai", "broken", "echo"]
    with pytest.raises(ValueError, match="procedural, openai, broken, echo"):
        load_generator("nope")


def test_builtin_names_win_over_entry_points(plugin: Path) -> None:
    assert isinstance(load_generator("procedural"), ProceduralGenerator)


def test_entry_point_that_makes_no_generator(plugin: Path) -> None:
    with pytest.raises(TypeError, match=r"'broken'.*no generate"):
        load_generator("broken")
