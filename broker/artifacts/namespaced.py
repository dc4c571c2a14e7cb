"""One artifact store per namespace: ``<artifact dir>/<namespace>/``. Deployments that share a
volume (and so one artifact dir) then never collect each other's images: a collector only
looks under its own namespace's root, and only references in its own namespace keep files.

Before namespaces, artifacts lived at the artifact dir itself. A namespaced store still reads
those (``get``, ``exists``, ``locate`` fall back to the old root), so inboxes written by an
older version keep their images; it never writes, counts or collects them there. Moving the
old shards into ``<artifact dir>/<namespace>/`` (operating.md) finishes the upgrade.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from ...ownership import Keys
from .store import ArtifactMissing, FileArtifactStore


def namespace_dir(namespace: str) -> str:
    """The folder name of a namespace: one path segment whatever the name holds."""
    name = quote(Keys(namespace).namespace, safe="")  # checked; "/" and "%" cannot escape
    return name.replace(".", "%2E") if name in (".", "..") else name


class NamespacedArtifactStore(FileArtifactStore):
    """A ``FileArtifactStore`` at ``<artifact_dir>/<namespace>/`` that also reads the
    pre-namespace layout at ``<artifact_dir>`` (never writing or collecting there)."""

    def __init__(self, artifact_dir: str | os.PathLike[str], namespace: str) -> None:
        super().__init__(Path(artifact_dir) / namespace_dir(namespace))
        self.legacy = FileArtifactStore(artifact_dir)

    def __repr__(self) -> str:
        return f"NamespacedArtifactStore({str(self.root)!r})"

    def get(self, digest: str) -> bytes:
        try:
            return super().get(digest)
        except ArtifactMissing:
            return self.legacy.get(digest)

    def exists(self, digest: str) -> bool:
        return super().exists(digest) or self.legacy.exists(digest)

    def locate(self, digest: str) -> str:
        try:
            return super().locate(digest)
        except ArtifactMissing:
            return self.legacy.locate(digest)
