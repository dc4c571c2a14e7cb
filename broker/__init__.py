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
    collect_artifacts,
    referenced_digests,
)
from .codes import KINDS, REASONS, STATES
from .deadletters import (
    HELD_STATES,
    DeadLetter,
    DeadLetters,
    FilterError,
    LetterFilter,
    LetterGone,
    LetterNotFound,
    Page,
    RedriveNotFound,
    RedriveProgress,
    RedriveRequest,
    Redrives,
    ReplayRefused,
    ReplayResult,
    Stats,
    select_letters,
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
from .runtime import Client, ReleaseReport, Run
from .settings import Settings
from .transport import DEFAULT_TASKS, HEADER, IMAGE_GENERATE, Route, header_value, wire_from_header

__all__ = [
    # the runtime's side
    "Client",
    "ReleaseReport",
    "Run",
    "Settings",
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
    "FilterError",
    "HELD_STATES",
    "LetterFilter",
    "LetterGone",
    "LetterNotFound",
    "Page",
    "RedriveNotFound",
    "RedriveProgress",
    "RedriveRequest",
    "Redrives",
    "ReplayRefused",
    "ReplayResult",
    "STATES",
    "Stats",
    "Reaper",
    "select_letters",
    # artifacts
    "ArtifactCorrupt",
    "ArtifactError",
    "ArtifactMissing",
    "ArtifactRef",
    "ArtifactStore",
    "FileArtifactStore",
    "NamespacedArtifactStore",
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
