"""An inbox entry as the runtime API shows it: the broker's Entry with artifact links the
same token can fetch (never a path on disk)."""

from __future__ import annotations

from typing import Any

from ..broker import Entry
from .runtime_models import ArtifactLink, InboxEntry


def artifact_url(digest: str, ref: str) -> str:
    return f"/v1/artifacts/{digest}?run={ref}"


def entry_body(entry: Entry, ref: str) -> InboxEntry:
    return InboxEntry(
        seq=entry.seq, role="user" if entry.role == "user" else "tool", kind=entry.kind,
        callback_id=entry.callback_id, payload=entry.payload,
        artifacts=[ArtifactLink(digest=a.digest, size=a.size, media_type=a.media_type,
                                url=artifact_url(a.digest, ref)) for a in entry.artifacts],
        provenance=entry.provenance)


def entry_json(entry: Entry, ref: str) -> dict[str, Any]:
    return entry_body(entry, ref).model_dump(mode="json")
