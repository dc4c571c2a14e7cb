"""leasegate.broker: what travels and where it lands (envelope, gate, inbox, dead letters)."""

from .artifacts import ArtifactRef, FileArtifactStore
from .client import Client, Run
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
from .envelope import BadSignature, Envelope, EnvelopeError, MalformedEnvelope
from .gate import Gate, Verdict
from .inbox import Entry, Inbox
from .settings import Settings

__all__ = [
    "ArtifactRef",
    "BadSignature",
    "Client",
    "DeadLetter",
    "DeadLetters",
    "Entry",
    "Envelope",
    "EnvelopeError",
    "FileArtifactStore",
    "Gate",
    "Inbox",
    "LetterGone",
    "LetterNotFound",
    "MalformedEnvelope",
    "Page",
    "ReplayRefused",
    "ReplayResult",
    "Run",
    "Settings",
    "Stats",
    "Verdict",
]
