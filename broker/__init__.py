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
    namespace_dir,
    referenced_digests,
)
from .codes import KINDS, REASONS, STATES
from .deadletters import (
    HELD_STATES,
    DeadLetter,
    DeadLetters,
    FilterError,
    KeepQuarantined,
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
    Keyring,
    MalformedEnvelope,
    RevokedKey,
    UnknownKey,
    VerifiedEnvelope,
    check_key_id,
    digest_args,
    generate_pems,
    key_id,
    load_signing_key,
    load_verify_key,
)
from .fingerprints import recent as recent_fingerprints
from .fingerprints import record as record_fingerprints
from .fingerprints import runtimes_refused, secret_fingerprint, workers_refusing
from .gate import Admission, Gate, Verdict
from .inbox import Entry, Inbox
from .reaper import Reaper
from .records import pack_body
from .runtime import Client, ReleaseReport, Run, check_callback_id
from .settings import Settings
from .transport import (
    DEFAULT_TASKS,
    HEADER,
    IMAGE_GENERATE,
    Route,
    broker_options,
    explain_broker_tls_failure,
    header_value,
    kombu_url,
    wire_from_header,
)

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
    "HELD_STATES",
    "KINDS",
    "KeepQuarantined",
    "MalformedEnvelope",
    "Keyring",
    "RevokedKey",
    "UnknownKey",
    "check_key_id",
    "generate_pems",
    "key_id",
    "load_signing_key",
    "load_verify_key",
    "REASONS",
    "Verdict",
    "recent_fingerprints",
    "record_fingerprints",
    "runtimes_refused",
    "secret_fingerprint",
    "workers_refusing",
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
    "check_digest",
    "collect_artifacts",
    "kombu_url",
    "broker_options",
    "explain_broker_tls_failure",
    "namespace_dir",
    "referenced_digests",
    # how owned tasks travel (Celery)
    "DEFAULT_TASKS",
    "HEADER",
    "IMAGE_GENERATE",
    "Route",
    "header_value",
    "wire_from_header",
]
