"""Dead letters for the console's tests, made the way production makes them: real PNGs from
the procedural backend put in the artifact store a ``serve`` process reads, and results
quarantined by the real gate because their run was superseded, released or never trusted."""

from __future__ import annotations

import io
import os
import random
import uuid
from pathlib import Path
from typing import Any

import redis
from PIL import Image

from leasegate.broker import ArtifactRef, Client, NamespacedArtifactStore, Run
from leasegate.workers.images.procedural import render_png

from .celery_workers import SECRET
from .gateway import GatewayProcess


def session_key(prefix: str = "cron:console") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def noisy_png(side: int, seed: int = 1) -> bytes:
    """A picture of random pixels: the worst case for a small thumbnail."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


class Letters:
    """Makes dead letters in a gateway's namespace, with images in its artifact store."""

    def __init__(self, server: GatewayProcess, namespace: str) -> None:
        self.redis = redis.Redis.from_url(server.env["LEASEGATE_REDIS_URL"])
        self.client = Client(self.redis, namespace, secret=SECRET.encode())
        self.store = NamespacedArtifactStore(server.env["LEASEGATE_ARTIFACT_DIR"], namespace)

    def image(self, prompt: str, seed: int = 7, size: int = 256) -> ArtifactRef:
        return self.store.put(render_png(prompt, seed, size, size), "image/png")

    def orphans(self, key: str, n: int, *, kind: str = "result", images: bool = True,
                tool: str = "image_generate",
                files: list[bytes] | None = None) -> tuple[list[str], Run]:
        """``n`` letters of a superseded run of ``key`` (each with an image unless told
        otherwise), and the live run that superseded it."""
        old = self.client.start_run(key, prompt="draw", ttl=60)
        envs = [old.envelope(tool, {"i": i}) for i in range(n)]
        new = self.client.start_run(key, prompt="draw again", ttl=60)
        ids = []
        for i, env in enumerate(envs):
            refs: list[ArtifactRef] = []
            if files is not None:
                refs = [self.store.put(files[i], "image/png")]
            elif images and kind == "result":
                refs = [self.image(f"{key} #{i}", seed=i)]
            result: dict[str, Any] = ({"error": "cancelled"} if kind == "error" else
                                      {"tool": tool, "prompt": f"{key} #{i}",
                                       "images": [{"width": 256, "height": 256}]})
            verdict = self.client.gate.deliver(env, result=result, artifacts=refs,
                                               kind=kind)  # type: ignore[arg-type]
            assert not verdict.delivered and verdict.reason == "superseded"
            ids.append(verdict.entry_id)
        return ids, new

    def malformed(self) -> str:
        return self.client.gate.deliver(os.urandom(64), result={}).entry_id

    def recovered(self, run: Run) -> list[str]:
        """Dead-letter ids replayed into ``run``, in inbox order (a repeat would show)."""
        return [str(e.provenance["dead_letter_id"]) for e in run.inbox.entries()
                if e.kind == "recovered"]

    def state(self, letter_id: str) -> str:
        return self.client.dead_letters.get(letter_id).state

    def thumbnail_file(self, digest: str) -> Path:
        return Path(self.store.locate(digest)).with_name(digest + ".thumb.webp")

    def close(self) -> None:
        self.redis.close()
