"""What the runtime side and the worker of one test share: Redis, namespace, secret."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Deployment:
    redis_url: str
    namespace: str
    secret: bytes
    artifact_dir: Path

    @property
    def transport_options(self) -> dict[str, Any]:
        """Kombu's own keys under the namespace: a task one test left on a queue is never
        taken by the next test's worker."""
        return {"global_keyprefix": f"{self.namespace}:kombu:"}
