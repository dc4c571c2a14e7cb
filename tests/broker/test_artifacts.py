"""The artifact store: content addressing, atomic writes, corruption, and the collector."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from leasegate.broker.artifacts import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactRef,
    ArtifactStore,
    FileArtifactStore,
    collect,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
NOW = time.time()  # touches by put() use the real clock
DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> FileArtifactStore:
    return FileArtifactStore(tmp_path / "artifacts")


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def age(store: FileArtifactStore, digest: str, mtime: float) -> None:
    os.utime(store.path(digest), (mtime, mtime))


def test_put_get_round_trip(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    assert ref == ArtifactRef(hashlib.sha256(PNG).hexdigest(), len(PNG), "image/png")
    assert store.get(ref.digest) == PNG
    assert store.exists(ref.digest)
    assert list(store.digests()) == [ref.digest]
    assert store.locate(ref.digest) == str(store.path(ref.digest))


def test_empty_content(store: FileArtifactStore) -> None:
    ref = store.put(b"", "application/octet-stream")
    assert ref.size == 0 and store.get(ref.digest) == b""


def test_file_store_is_an_artifact_store(store: FileArtifactStore) -> None:
    typed: ArtifactStore = store
    assert typed is store


def test_sharded_path(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    d = ref.digest
    assert store.path(d) == store.root / d[:2] / d[2:4] / d
    assert files(store.root) == [store.root / d[:2] / d[2:4] / d]
    assert store.path(d).stat().st_mode & 0o777 == 0o644


def test_same_content_twice_is_one_file_and_refreshes_mtime(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    age(store, ref.digest, NOW - DAY)
    assert store.put(PNG, "image/webp") == ArtifactRef(ref.digest, ref.size, "image/webp")
    assert len(files(store.root)) == 1
    assert store.modified_at(ref.digest) > NOW - DAY


def test_atomic_write_leaves_no_temp_file(store: FileArtifactStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store.put(PNG, "image/png")
    assert [p.name for p in files(store.root)] == [hashlib.sha256(PNG).hexdigest()]

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.put(b"other", "text/plain")
    assert len(files(store.root)) == 1
    assert not store.exists(hashlib.sha256(b"other").hexdigest())


def test_missing(store: FileArtifactStore) -> None:
    digest = "ab" * 32
    assert not store.exists(digest)
    assert store.delete(digest) is False
    for call in (store.get, store.modified_at, store.locate):
        with pytest.raises(ArtifactMissing):
            call(digest)
    with pytest.raises(KeyError):
        store.get(digest)


def test_corrupt_file_detected_and_repaired_by_put(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    store.path(ref.digest).write_bytes(PNG[:-1] + b"\x00")
    with pytest.raises(ArtifactCorrupt, match=ref.digest):
        store.get(ref.digest)
    store.put(PNG, "image/png")
    assert store.get(ref.digest) == PNG


@pytest.mark.parametrize("digest", ["../../etc/passwd", "AB" * 32, "ab" * 31, "", "g" * 64])
def test_bad_digest_never_becomes_a_path(store: FileArtifactStore, digest: str) -> None:
    for call in (store.get, store.exists, store.delete, store.modified_at, store.locate):
        with pytest.raises(ValueError, match="digest"):
            call(digest)


def test_digests_ignore_foreign_files(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    (store.root / "README").write_text("x")
    (store.root / "zz").mkdir()
    (store.path(ref.digest).parent / (".tmp-" + "x")).write_bytes(b"partial")
    misplaced = store.root / "00" / "00" / ("11" * 32)
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(b"x")
    assert list(store.digests()) == [ref.digest]


def test_concurrent_puts_of_the_same_content(store: FileArtifactStore) -> None:
    data = os.urandom(2 << 20)
    barrier = threading.Barrier(8)
    refs: list[ArtifactRef] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            barrier.wait()
            refs.append(store.put(data, "image/png"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(refs) == 8 and len(set(refs)) == 1
    assert files(store.root) == [store.path(refs[0].digest)]
    assert store.get(refs[0].digest) == data


# --- ArtifactRef ---

def test_ref_round_trip() -> None:
    ref = ArtifactRef("ab" * 32, 10, "image/png")
    assert ArtifactRef.from_dict(ref.to_dict()) == ref


@pytest.mark.parametrize(("field", "value"), [
    ("digest", "AB" * 32), ("digest", "ab" * 31), ("digest", 5), ("size", -1), ("size", 1.0),
    ("size", True), ("size", "10"), ("media_type", ""), ("media_type", "x" * 128),
    ("media_type", None),
])
def test_ref_validation(field: str, value: object) -> None:
    d: dict[str, object] = {"digest": "ab" * 32, "size": 10, "media_type": "image/png"}
    d[field] = value
    with pytest.raises(ValueError, match=field):
        ArtifactRef.from_dict(d)


@pytest.mark.parametrize("field", ["digest", "size", "media_type"])
def test_ref_missing_field(field: str) -> None:
    d: dict[str, object] = {"digest": "ab" * 32, "size": 10, "media_type": "image/png"}
    del d[field]
    with pytest.raises(ValueError, match=field):
        ArtifactRef.from_dict(d)


def test_ref_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        ArtifactRef.from_dict(["ab" * 32, 1, "x"])  # type: ignore[arg-type]


def test_put_rejects_a_bad_media_type(store: FileArtifactStore) -> None:
    with pytest.raises(ValueError, match="media_type"):
        store.put(PNG, "")
    assert files(store.root) == []


# --- collect ---

def test_collect_removes_only_unreferenced_old_artifacts(store: FileArtifactStore) -> None:
    old_kept = store.put(b"referenced", "text/plain").digest
    old_gone = store.put(b"orphan", "text/plain").digest
    young = store.put(b"young orphan", "text/plain").digest
    for digest in (old_kept, old_gone):
        age(store, digest, NOW - 2 * DAY)
    age(store, young, NOW - 60)
    assert collect(store, [old_kept], grace=DAY, now=NOW) == [old_gone]
    assert sorted(store.digests()) == sorted([old_kept, young])
    assert collect(store, iter([old_kept]), grace=DAY, now=NOW) == []
    assert collect(store, [], grace=30, now=NOW) == sorted([old_kept, young])
    assert files(store.root) == []


def test_collect_cleans_stale_temp_files(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    shard = store.path(ref.digest).parent
    stale, fresh = shard / ".tmp-stale", shard / ".tmp-fresh"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"in progress")
    os.utime(stale, (NOW - 2 * DAY, NOW - 2 * DAY))
    os.utime(fresh, (NOW - 10, NOW - 10))
    assert collect(store, [ref.digest], grace=DAY, now=NOW) == []
    assert not stale.exists() and fresh.exists() and store.exists(ref.digest)


def test_delete_keeps_a_file_touched_since_the_cutoff(store: FileArtifactStore) -> None:
    ref = store.put(PNG, "image/png")
    age(store, ref.digest, NOW - 10)
    assert store.delete(ref.digest, modified_before=NOW - 60) is False
    assert store.delete(ref.digest, modified_before=NOW) is True
    assert files(store.root) == []


def test_delete_puts_back_a_file_touched_while_claimed(store: FileArtifactStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A put's touch lands between the collector's first look and its rename.
    ref = store.put(PNG, "image/png")
    age(store, ref.digest, NOW - DAY)
    rename = Path.rename

    def touch_then_rename(self: Path, target: str | os.PathLike[str]) -> Path:
        os.utime(self)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", touch_then_rename)
    assert store.delete(ref.digest, modified_before=NOW - 60) is False
    assert files(store.root) == [store.path(ref.digest)]
    assert store.get(ref.digest) == PNG
