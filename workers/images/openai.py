"""The ``openai`` backend: any OpenAI-compatible ``POST {base_url}/images/generations``.

Standard library HTTP (urllib) with per-attempt timeouts, retries with exponential backoff on
429, 408, 5xx, timeouts and connection errors (``Retry-After`` honoured, capped), and waits
that a cancel interrupts. Each HTTP attempt runs in a short-lived daemon thread so that a
cancel stops ``generate`` at once instead of after the in-flight request's timeout.
The API key is sent only to base_url (never on redirects or image URLs) and is redacted
from every error message.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import math
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from .backends import (
    BadRequest,
    CancelToken,
    GeneratedImage,
    GeneratorError,
    ImageRequest,
    TransientError,
)
from .openai_http import (
    MAX_ERROR_CHARS,
    as_png,
    cancellable,
    error_message,
    error_param,
    is_permanent,
    read_capped,
    retry_after_seconds,
    strip_query,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENV_BASE_URL = "LEASEGATE_OPENAI_BASE_URL"
ENV_API_KEY = "LEASEGATE_OPENAI_API_KEY"
ENV_API_KEY_FALLBACK = "OPENAI_API_KEY"
ENV_MODEL = "LEASEGATE_OPENAI_MODEL"
ENV_TIMEOUT = "LEASEGATE_OPENAI_TIMEOUT"
ENV_MAX_RETRIES = "LEASEGATE_OPENAI_MAX_RETRIES"
ENV_BACKOFF = "LEASEGATE_OPENAI_BACKOFF"
MAX_DELAY = 60.0  # cap on one backoff or Retry-After wait: a longer one is the task's to make
_RETRYABLE_STATUS = frozenset({408, 429})
_BAD_REQUEST_STATUS = frozenset({400, 422})


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Message
    body: bytes


class OpenAIImagesGenerator:
    """Images from an OpenAI-compatible endpoint; one request per ``generate`` call."""

    name = "openai"

    def __init__(self, base_url: str, api_key: str, model: str = "gpt-image-1",
                 timeout: float = 120.0, max_retries: int = 3, backoff: float = 1.0) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme if isinstance(base_url, str) else ""
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http or https URL, not {base_url!r:.100}")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key must be a non-empty str")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty str, not {model!r:.100}")
        if not _is_number(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, not {max_retries!r}")
        if not _is_number(backoff) or backoff < 0:
            raise ValueError(f"backoff must be a number of seconds >= 0, not {backoff!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)

    def __repr__(self) -> str:  # no key here: reprs end up in logs and tracebacks
        return (f"OpenAIImagesGenerator(base_url={self.base_url!r}, model={self.model!r}, "
                f"timeout={self.timeout}, max_retries={self.max_retries})")

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIImagesGenerator:
        """Settings from LEASEGATE_OPENAI_* variables; keyword arguments take precedence."""
        options: dict[str, Any] = {"base_url": os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL}
        api_key = os.environ.get(ENV_API_KEY) or os.environ.get(ENV_API_KEY_FALLBACK)
        if api_key:
            options["api_key"] = api_key
        if model := os.environ.get(ENV_MODEL):
            options["model"] = model
        for name, option, kind in ((ENV_TIMEOUT, "timeout", float),
                                   (ENV_MAX_RETRIES, "max_retries", int),
                                   (ENV_BACKOFF, "backoff", float)):
            if raw := os.environ.get(name):
                try:
                    options[option] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}"
                                     f", not {raw!r:.40}") from None
        options.update(overrides)
        if not options.get("api_key"):
            raise ValueError(f"no API key for the openai generator: set {ENV_API_KEY} "
                             f"(or {ENV_API_KEY_FALLBACK})")
        return cls(**options)

    def generate(self, request: ImageRequest, cancel: CancelToken) -> list[GeneratedImage]:
        cancel.raise_if_cancelled()
        body: dict[str, object] = {"model": self.model, "prompt": request.prompt,
                                   "n": request.n, "size": request.size}
        # GPT image models always answer in base64 and reject response_format with a 400.
        if not self.model.startswith("gpt-image"):
            body["response_format"] = "b64_json"
        if request.seed is not None:
            body["seed"] = request.seed  # not every endpoint knows seed; strict ones say 400
        http_request = urllib.request.Request(
            f"{self.base_url}/images/generations", data=json.dumps(body).encode(),
            method="POST", headers={"Content-Type": "application/json",
                                    "Accept": "application/json"})
        # Unredirected: urllib would otherwise carry the key along to wherever a 3xx points.
        http_request.add_unredirected_header("Authorization", f"Bearer {self._api_key}")
        items = self._items(self._call(http_request, cancel))[:request.n]
        seed = request.seed if len(items) == 1 else None  # per-image seeds of n > 1: unknown
        images = []
        for index, item in enumerate(items):
            data = self._image_bytes(index, item, cancel)
            png, width, height = as_png(data, index)
            images.append(GeneratedImage(data=png, width=width, height=height, seed=seed))
        return images

    def _items(self, body: bytes) -> list[Mapping[str, object]]:
        try:
            payload = json.loads(body)
        except ValueError:
            raise GeneratorError(self._redact(f"response is not JSON: {body[:80]!r}")) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or not data:
            raise GeneratorError("response has no non-empty data list")
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise GeneratorError(f"data[{index}] is {type(item).__name__}, not an object")
        return data

    def _image_bytes(self, index: int, item: Mapping[str, object],
                     cancel: CancelToken) -> bytes:
        b64, url = item.get("b64_json"), item.get("url")
        if isinstance(b64, str) and b64:
            try:
                return base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise GeneratorError(f"data[{index}].b64_json is not valid base64") from None
        if isinstance(url, str) and urllib.parse.urlsplit(url).scheme in ("http", "https"):
            # No Authorization: image URLs are pre-signed and often on another host.
            return self._call(urllib.request.Request(url, method="GET"), cancel)
        raise GeneratorError(f"data[{index}] has neither b64_json nor an http(s) url")

    def _call(self, http_request: urllib.request.Request, cancel: CancelToken) -> bytes:
        """The 2xx body, after retries; raises the GeneratorError that fits the failure."""
        where = f"{http_request.get_method()} {strip_query(http_request.full_url)}"
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                reply = cancellable(lambda: self._attempt(http_request), cancel)
            except (OSError, http.client.HTTPException) as e:  # timeouts, resets, refusals
                if is_permanent(e):
                    raise GeneratorError(self._redact(f"{where} failed: {e}")) from None
                problem = f"{type(e).__name__}: {e}"
            else:
                if 200 <= reply.status < 300:
                    return reply.body
                message = self._redact(error_message(reply.body))
                if reply.status in _BAD_REQUEST_STATUS:
                    raise BadRequest(error_param(reply.body), f"{where} rejected the request "
                                     f"(HTTP {reply.status}): {message}")
                if reply.status not in _RETRYABLE_STATUS and reply.status < 500:
                    raise GeneratorError(f"{where} failed (HTTP {reply.status}): {message}")
                problem = f"HTTP {reply.status}: {message}"
                retry_after = retry_after_seconds(reply.headers)
            delay = min(MAX_DELAY, retry_after if retry_after is not None
                        else self.backoff * 2**attempt)
            if attempt >= self.max_retries:
                raise TransientError(self._redact(f"{where} failed after {attempt + 1} "
                                                  f"attempts; last: {problem}"),
                                     retry_after=delay)
            log.info("%s: %s; retry %d of %d in %.1fs", where, self._redact(problem),
                     attempt + 1, self.max_retries, delay)
            if cancel.wait(delay):
                cancel.raise_if_cancelled()
            attempt += 1

    def _attempt(self, http_request: urllib.request.Request) -> _Reply:
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                return _Reply(response.status, response.headers, read_capped(response))
        except urllib.error.HTTPError as e:
            with e:  # an HTTPError holds the open response; closing it frees the socket
                return _Reply(e.code, e.headers, e.read(MAX_ERROR_CHARS * 20))

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]")


def _is_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
