"""The artifact collector: what an inbox or a dead letter references stays; the rest goes
once it is older than the grace period."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis

from leasegate.broker import (
    ArtifactRef,
    Client,
    FileArtifactStore,
    collect_artifacts,
    referenced_digests,
)
from tests.broker.test_deadletters import sk
from tests.conftest import SECRET


def aged(store: FileArtifactStore, ref: ArtifactRef, seconds: float = 3600) -> ArtifactRef:
    then = time.time() - seconds  # file mtimes are the store's (local) clock
    os.utime(store.path(ref.digest), (then, then))
    return ref


def letter_with(client: Client, ref: ArtifactRef, session_key: str | None = None) -> str:
    run = client.start_run(session_key or sk(), prompt="p", ttl=30)
    env = run.envelope("image_generate", {})
    run.release("failed")
    return client.gate.deliver(env, result={"image": ref.digest}, artifacts=[ref]).entry_id


def test_collect_keeps_referenced_and_young_removes_the_rest(broker_client: Client,
                                                            tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    in_inbox, in_letter, orphan, young = (store.put(f"image {i}".encode(), "image/png")
                                          for i in range(4))
    for ref in (in_inbox, in_letter, orphan):
        aged(store, ref)
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    assert broker_client.gate.deliver(run.envelope("image_generate", {}), result={},
                                      artifacts=[in_inbox]).delivered
    dlq_id = letter_with(broker_client, in_letter)
    keys = broker_client.keys
    assert referenced_digests(broker_client.redis, keys) == {in_inbox.digest, in_letter.digest}
    assert collect_artifacts(broker_client.redis, keys, store, grace=60) == [orphan.digest]
    assert not store.exists(orphan.digest)
    assert all(store.exists(r.digest) for r in (in_inbox, in_letter, young))
    broker_client.dead_letters.discard(dlq_id)  # the only reference goes with the payload
    assert collect_artifacts(broker_client.redis, keys, store, grace=60) == [in_letter.digest]
    assert store.exists(in_inbox.digest) and store.exists(young.digest)


def test_a_replayed_letter_keeps_its_artifact_through_the_inbox(broker_client: Client,
                                                               tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    ref = aged(store, store.put(b"late image", "image/png"))
    key = sk()
    dlq_id = letter_with(broker_client, ref, session_key=key)
    target = broker_client.start_run(key, prompt="again", ttl=30)
    broker_client.dead_letters.replay(dlq_id, to=target)
    broker_client.dead_letters.discard(dlq_id)
    assert target.inbox.entries()[-1].artifacts == [ref]
    assert collect_artifacts(broker_client.redis, broker_client.keys, store, grace=60) == []
    assert store.exists(ref.digest)


def test_other_namespaces_references_are_not_ours(redis_client: redis.Redis,
                                                  namespace: str) -> None:
    ours = Client(redis_client, namespace, secret=SECRET)
    theirs = Client(redis_client, namespace + "x", secret=SECRET)
    mine = ArtifactRef("a" * 64, 1, "image/png")
    other = ArtifactRef("b" * 64, 1, "image/png")
    letter_with(ours, mine)
    letter_with(theirs, other)
    assert referenced_digests(redis_client, ours.keys) == {mine.digest}
    assert referenced_digests(redis_client, theirs.keys) == {other.digest}


def test_unreadable_references_stop_the_collection(broker_client: Client,
                                                   tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    ref = aged(store, store.put(b"kept", "image/png"))
    orphan = aged(store, store.put(b"orphan", "image/png"))
    dlq_id = letter_with(broker_client, ref)
    broker_client.redis.hset(broker_client.keys.dead_letter(dlq_id), "arts", b"\xc1")
    with pytest.raises(ValueError, match="unreadable artifact references"):
        collect_artifacts(broker_client.redis, broker_client.keys, store, grace=60)
    assert store.exists(ref.digest) and store.exists(orphan.digest)


def test_long_inboxes_are_read_in_pages(broker_client: Client) -> None:
    run = broker_client.start_run(sk(), prompt="p", ttl=30)
    refs = [ArtifactRef(f"{i:064x}", 1, "image/png") for i in range(450)]
    for ref in refs:
        broker_client.gate.deliver(run.envelope("image_generate", {}), result={},
                                   artifacts=[ref])
    assert referenced_digests(broker_client.redis, broker_client.keys) == {
        r.digest for r in refs}
