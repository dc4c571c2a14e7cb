"""Artifacts: result bytes (images) kept out of Redis, in a content-addressed store.

Inbox and dead-letter entries carry an ``ArtifactRef`` (digest, size, media type); the bytes
live in an ``ArtifactStore``. ``FileArtifactStore`` keeps them under a root folder as
``root/ab/cd/<sha256 hex>``. ``collect`` removes what no entry references any more.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

MAX_MEDIA_TYPE_CHARS = 127
TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHARD = re.compile(r"[0-9a-f]{2}")


class ArtifactError(Exception):
    """Base class of the artifact store's errors."""


class ArtifactMissing(ArtifactError, KeyError):
    """No artifact with this digest is stored."""


class ArtifactCorrupt(ArtifactError):
    """The stored bytes do not hash to their digest."""


def check_digest(digest: object) -> str:
    # Digests become file names: anything but 64 lowercase hex could escape the root.
    if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest):
        raise ValueError(f"digest must be 64 lowercase hex digits, not {digest!r:.80}")
    return digest


@dataclass(frozen=True)
class ArtifactRef:
    """What an inbox or dead-letter entry keeps of an artifact."""

    digest: str
    size: int
    media_type: str

    def __post_init__(self) -> None:
        check_digest(self.digest)
        if type(self.size) is not int or self.size < 0:
            raise ValueError(f"size must be an int >= 0, not {self.size!r}")
        if (not isinstance(self.media_type, str) or not self.media_type
                or len(self.media_type) > MAX_MEDIA_TYPE_CHARS):
            raise ValueError(f"media_type must be a str of 1..{MAX_MEDIA_TYPE_CHARS} chars, "
                             f"not {self.media_type!r:.80}")

    def to_dict(self) -> dict[str, object]:
        return {"digest": self.digest, "size": self.size, "media_type": self.media_type}

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> ArtifactRef:
        """The reverse of ``to_dict``; ValueError naming the field if one is missing or bad."""
        if not isinstance(d, Mapping):
            raise ValueError(f"an artifact ref must be a mapping, not {type(d).__name__}")
        for name in ("digest", "size", "media_type"):
            if name not in d:
                raise ValueError(f"artifact ref has no {name}")
        return cls(d["digest"], d["size"], d["media_type"])  # type: ignore[arg-type]


class ArtifactStore(Protocol):
    """Where artifact bytes live. Digests are hex sha256 of the content."""

    def put(self, data: bytes, media_type: str) -> ArtifactRef:
        """Store ``data`` (a no-op if present, but it counts as fresh for ``collect``)."""
        ...

    def get(self, digest: str) -> bytes:
        """The bytes; ``ArtifactMissing`` if absent, ``ArtifactCorrupt`` if they do not hash."""
        ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str, *, modified_before: float | None = None) -> bool:
        """Remove it, only if last stored before ``modified_before`` (epoch s) when given.

        The check and the removal must be atomic with respect to ``put``: a put that returned
        a ref keeps its artifact. True if removed.
        """
        ...

    def digests(self) -> Iterator[str]: ...

    def modified_at(self, digest: str) -> float:
        """When it was last put (epoch seconds); ``ArtifactMissing`` if absent."""
        ...

    def locate(self, digest: str) -> str:
        """A path or URL an operator can open; ``ArtifactMissing`` if absent."""
        ...

    def sweep(self, modified_before: float) -> int:
        """Remove leftovers of interrupted writes older than ``modified_before``; how many."""
        ...


class FileArtifactStore:
    """Artifacts as files under ``root``, sharded ``root/ab/cd/<digest>``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"FileArtifactStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes, media_type: str) -> ArtifactRef:
        ref = ArtifactRef(hashlib.sha256(data).hexdigest(), len(data), media_type)
        path = self.path(ref.digest)
        try:
            # Touch before anything else: collect() re-reads the mtime after claiming the file,
            # so a touched file is never removed under a ref we are about to hand out.
            os.utime(path)
        except FileNotFoundError:
            self._write(path, data)
        else:
            if not self._intact(path, ref.digest):
                self._write(path, data)
        return ref

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
                # mkstemp makes 0600 files; operators and readers in other processes need 0644.
                os.fchmod(file.fileno(), 0o644)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def _intact(self, path: Path, digest: str) -> bool:
        try:
            return _hash_file(path) == digest
        except FileNotFoundError:
            return False

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(digest) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise ArtifactCorrupt(f"artifact {digest} at {path} hashes to {actual}")
        return data

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def delete(self, digest: str, *, modified_before: float | None = None) -> bool:
        path = self.path(digest)
        if modified_before is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            return True
        try:
            if path.stat().st_mtime >= modified_before:
                return False
            # Claim it by renaming: a put from now on finds no file and writes a fresh one.
            claimed = path.with_name(f"{TEMP_PREFIX}del-{uuid.uuid4().hex}")
            path.rename(claimed)
        except FileNotFoundError:
            return False
        if claimed.stat().st_mtime >= modified_before:
            # A put touched it before the rename: put it back (same bytes, so a newer copy
            # it may replace is identical).
            os.replace(claimed, path)
            return False
        claimed.unlink()
        return True

    def digests(self) -> Iterator[str]:
        """Every stored digest, in order."""
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                for entry in _scan(second):
                    name = entry.name
                    if (_HEX_SHA256.fullmatch(name) and name[:2] == Path(first).name
                            and name[2:4] == Path(second).name and entry.is_file()):
                        yield name

    def modified_at(self, digest: str) -> float:
        try:
            return self.path(digest).stat().st_mtime
        except FileNotFoundError:
            raise ArtifactMissing(digest) from None

    def locate(self, digest: str) -> str:
        path = self.path(digest)
        if not path.is_file():
            raise ArtifactMissing(digest)
        return str(path)

    def sweep(self, modified_before: float) -> int:
        removed = 0
        for first in _subdirs(self.root):
            for second in _subdirs(first):
                for entry in _scan(second):
                    if not entry.name.startswith(TEMP_PREFIX):
                        continue
                    try:
                        if entry.stat().st_mtime < modified_before:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:
                        continue
        return removed


def collect(store: ArtifactStore, referenced: Iterable[str], grace: float,
            now: float | None = None) -> list[str]:
    """Remove the artifacts not in ``referenced`` last stored more than ``grace`` seconds ago,
    and leftovers of interrupted writes as old; return the removed digests.

    ``referenced`` must be read before this is called: an artifact put after that is younger
    than ``grace`` (if ``grace`` exceeds the time from put to a referencing entry), so it stays.
    Times are the store's clock (file mtimes: the local clock), not Redis server time.
    """
    cutoff = (time.time() if now is None else now) - grace
    keep = set(referenced)
    removed = [digest for digest in list(store.digests())
               if digest not in keep and store.delete(digest, modified_before=cutoff)]
    swept = store.sweep(cutoff)
    if removed or swept:
        log.info("artifact collect: removed %d artifacts, %d stale temp files",
                 len(removed), swept)
    return removed


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _subdirs(folder: str | Path) -> Iterator[str]:
    # Shard folders are 2 lowercase hex chars; anything else under root is not ours.
    for entry in _scan(folder):
        if _SHARD.fullmatch(entry.name) and entry.is_dir():
            yield entry.path


def _scan(folder: str | Path) -> list[os.DirEntry[str]]:
    # Sorted, so digests() lists in digest order and collect() is deterministic.
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except FileNotFoundError:
        return []


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
