"""leasegate.broker: what travels and where it lands (envelope, gate, inbox, dead letters,
artifacts), and the runtime-facing Client. Only ``transport`` speaks Celery.

This is the layer's whole public face: workers import from here, never from a submodule.
"""

from .artifacts import (
    ArtifactCorrupt,
    ArtifactError,
    ArtifactMissing,
    ArtifactRef,
    ArtifactStore,
    FileArtifactStore,
    NamespacedArtifactStore,
    check_digest,
    collect_artifacts,
    referenced_digests,
)
from .codes import KINDS, REASONS, STATES
from .deadletters import (
    DeadLetter,
    DeadLetters,
    LetterGone,
    LetterNotFound,
    Page,
    ReplayRefused,
    ReplayResult,
    Stats,
)
from .envelope import (
    MIN_SECRET_BYTES,
    BadSignature,
    Envelope,
    EnvelopeError,
    MalformedEnvelope,
    VerifiedEnvelope,
    digest_args,
)
from .gate import Admission, Gate, Verdict
from .inbox import Entry, Inbox
from .reaper import Reaper
from .records import pack_body
from .runtime import Client, ReleaseReport, Run, check_callback_id
from .settings import Settings
from .transport import DEFAULT_TASKS, HEADER, IMAGE_GENERATE, Route, header_value, wire_from_header

__all__ = [
    # the runtime's side
    "Client",
    "ReleaseReport",
    "Run",
    "Settings",
    "check_callback_id",
    # envelopes and the gate
    "Admission",
    "BadSignature",
    "Envelope",
    "MIN_SECRET_BYTES",
    "EnvelopeError",
    "Gate",
    "KINDS",
    "MalformedEnvelope",
    "REASONS",
    "Verdict",
    "VerifiedEnvelope",
    "digest_args",
    "pack_body",
    # inboxes
    "Entry",
    "Inbox",
    # dead letters
    "DeadLetter",
    "DeadLetters",
    "LetterGone",
    "LetterNotFound",
    "Page",
    "ReplayRefused",
    "ReplayResult",
    "STATES",
    "Stats",
    "Reaper",
    # artifacts
    "ArtifactCorrupt",
    "ArtifactError",
    "ArtifactMissing",
    "ArtifactRef",
    "ArtifactStore",
    "FileArtifactStore",
    "NamespacedArtifactStore",
    "check_digest",
    "collect_artifacts",
    "referenced_digests",
    # how owned tasks travel (Celery)
    "DEFAULT_TASKS",
    "HEADER",
    "IMAGE_GENERATE",
    "Route",
    "header_value",
    "wire_from_header",
]
