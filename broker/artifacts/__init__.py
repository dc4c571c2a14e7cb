"""Artifacts: result bytes (images) kept out of Redis in a content-addressed store, and the
collector that removes those no inbox or dead letter references any more. Two concerns, two
modules: ``store`` knows files and digests, ``collector`` knows where Redis keeps references.
"""

from .collector import collect_artifacts, referenced_digests
from .namespaced import NamespacedArtifactStore, namespace_dir
from .store import (
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactRef,
    ArtifactStore,
    FileArtifactStore,
    check_digest,
    collect,
)

__all__ = [
    "ArtifactCorrupt",
    "ArtifactError",
    "ArtifactMissing",
    "ArtifactRef",
    "ArtifactStore",
    "FileArtifactStore",
    "NamespacedArtifactStore",
    "check_digest",
    "collect",
    "collect_artifacts",
    "namespace_dir",
    "referenced_digests",
]
