"""HTTP plumbing of the ``openai`` backend (openai.py): an attempt a cancel can interrupt, a
capped body, which failures are worth a retry, OpenAI's error bodies, Retry-After, and the
images it returns checked and converted to PNG."""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import ssl
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from email.message import Message
from typing import TypeVar

from PIL import Image

from .backends import CancelToken, GeneratorError

MAX_RESPONSE_BYTES = 64 << 20  # four base64 1792x1024 PNGs fit many times over
MAX_ERROR_CHARS = 300
POLL = 0.05  # how often a cancel is noticed while an HTTP attempt is in flight
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

T = TypeVar("T")


def cancellable(call: Callable[[], T], cancel: CancelToken) -> T:
    """``call()`` in a daemon thread; on cancel, stop waiting (it ends by its own timeout)."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as e:  # handed to the caller's thread below
            failure.append(e)
        finally:
            done.set()

    threading.Thread(target=run, name="leasegate-openai-http", daemon=True).start()
    while not done.wait(POLL):
        cancel.raise_if_cancelled()
    if failure:
        raise failure[0]
    return outcome[0]


def read_capped(response: http.client.HTTPResponse) -> bytes:
    body = response.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        raise GeneratorError(f"response is larger than the limit of {MAX_RESPONSE_BYTES} bytes")
    return body


def is_permanent(error: BaseException) -> bool:
    # A bad certificate or an unsupported URL will fail the same way on every retry.
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return isinstance(reason, ssl.SSLCertVerificationError) or (
        isinstance(error, urllib.error.URLError) and isinstance(reason, str))


def strip_query(url: str) -> str:
    # Pre-signed image URLs carry credentials in the query string.
    return urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()


def _error_json(body: bytes) -> Mapping[str, object]:
    try:
        payload = json.loads(body)
    except ValueError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def error_message(body: bytes) -> str:
    """OpenAI's {"error": {"message": ...}}, else the start of the body as text."""
    message = _error_json(body).get("message")
    text = message if isinstance(message, str) else body.decode("utf-8", "replace")
    return " ".join(text.split())[:MAX_ERROR_CHARS] or "(empty body)"


def error_param(body: bytes) -> str:
    param = _error_json(body).get("param")
    return param if isinstance(param, str) and param else "request"


def retry_after_seconds(headers: Message) -> float | None:
    """Retry-After as seconds (delta or HTTP date), None when absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def as_png(data: bytes, index: int) -> tuple[bytes, int, int]:
    """PNG bytes with their real size; other formats are converted, not trusted."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes it all: a truncated image fails here, not downstream
            if data.startswith(PNG_MAGIC) and image.format == "PNG":
                return data, image.width, image.height
            out = io.BytesIO()
            converted = image if image.mode in ("RGB", "RGBA", "L", "LA") else image.convert("RGBA")
            converted.save(out, format="PNG")
            return out.getvalue(), image.width, image.height
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise GeneratorError(f"data[{index}] is not a readable image: {e}") from None
