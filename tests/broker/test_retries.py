"""Dead-letter changes that a client retry runs twice: the caller must see the first outcome.

The connection's Retry resends a script whose reply was lost. Replay, discard, purge and
archive are not idempotent on their own (the second run finds the letter already changed),
so each call carries a request id and a repeat of it is answered as the first call was. The
lost reply is real: a loopback proxy forwards the script call to Redis and closes the
connection instead of passing the reply back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from leasegate.broker import Client
from leasegate.broker.keys import letter_shard
from leasegate.ownership import connect
from leasegate.testing.redis_server import RedisServer
from tests.broker.test_deadletters import released, sk
from tests.conftest import SECRET
from tests.support.lossy_proxy import LossyProxy

LETTER_SCRIPTS = ("replay", "discard", "purge", "archive")


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[LossyProxy]:
    with LossyProxy("127.0.0.1", redis_server.port) as lossy:
        yield lossy


@pytest.fixture
def lossy_client(proxy: LossyProxy, namespace: str) -> Iterator[Client]:
    """A Client whose connection goes through the proxy, with connect()'s usual Retry."""
    client = Client(connect(proxy.url), namespace, secret=SECRET)
    # loaded beforehand, so the call whose reply is lost is the script itself, not NOSCRIPT
    for name in LETTER_SCRIPTS:
        client.redis.script_load(client.scripts._commands[name].script.script)
    yield client
    client.redis.close()


def history_states(client: Client, letter_id: str) -> list[str]:
    return [step["state"] for step in client.dead_letters.get(letter_id).history]


def test_replay_whose_reply_was_lost_reports_the_replay(broker_client: Client,
                                                        lossy_client: Client,
                                                        proxy: LossyProxy) -> None:
    [letter_id] = released(broker_client, 1)
    target = broker_client.start_run(broker_client.dead_letters.get(letter_id).session_key,
                                     prompt="again", ttl=30)
    proxy.drop_reply_to(b"EVALSHA")
    result = lossy_client.dead_letters.replay(letter_id, to=target)
    assert proxy.dropped.is_set(), "the proxy did not lose the reply: the test proves nothing"
    entries = target.inbox.entries()
    assert [e.kind for e in entries] == ["prompt", "recovered"]  # replayed once, not twice
    assert (result.entry_id, result.seq) == (entries[1].id, 2)
    assert history_states(broker_client, letter_id).count("redelivered") == 1


def test_discard_whose_reply_was_lost_reports_the_discard(broker_client: Client,
                                                          lossy_client: Client,
                                                          proxy: LossyProxy) -> None:
    [letter_id] = released(broker_client, 1)
    proxy.drop_reply_to(b"EVALSHA")
    assert lossy_client.dead_letters.discard(letter_id) == "quarantined"
    assert proxy.dropped.is_set()
    assert broker_client.dead_letters.get(letter_id).state == "discarded"


def test_purge_whose_reply_was_lost_counts_every_letter_it_discarded(
        broker_client: Client, lossy_client: Client, proxy: LossyProxy) -> None:
    key = sk()
    letters = released(broker_client, 5, session_key=key)
    proxy.drop_reply_to(b"EVALSHA")
    purged = lossy_client.dead_letters.purge(session_key=key)
    assert proxy.dropped.is_set()
    assert sorted(purged) == sorted(letters)
    assert {broker_client.dead_letters.get(i).state for i in letters} == {"discarded"}


def test_archive_repeated_with_its_request_id_reports_the_archive(
        broker_client: Client) -> None:
    [letter_id] = released(broker_client, 1)
    k, client = broker_client.keys, broker_client.redis
    stream = k.dead_letters(letter_shard(letter_id))
    client.xgroup_create(stream, "drain", id="0")
    client.xreadgroup("drain", "c1", {stream: ">"})
    request = uuid.uuid4().hex
    args = ["drain", letter_id, "api", "c1", request]
    keys = [stream, k.dead_letter(letter_id)]
    first = broker_client.scripts("archive", keys, args)
    again = broker_client.scripts("archive", keys, args)  # what the client's retry sends
    other = broker_client.scripts("archive", keys, [*args[:4], uuid.uuid4().hex])
    assert [int(first[0]), int(again[0]), int(other[0])] == [1, 1, 0]
    assert history_states(broker_client, letter_id).count("archived") == 1


@pytest.mark.parametrize("name", ["replay", "discard"])
def test_another_request_still_sees_the_letter_changed(broker_client: Client,
                                                       name: str) -> None:
    """The request id answers only its own repeat: a second, separate call is refused."""
    [letter_id] = released(broker_client, 1)
    letters = broker_client.dead_letters
    if name == "replay":
        target = broker_client.start_run(letters.get(letter_id).session_key, prompt="p")
        letters.replay(letter_id, target)
        with pytest.raises(Exception, match="already_redelivered"):
            letters.replay(letter_id, target)
    else:
        letters.discard(letter_id)
        with pytest.raises(Exception, match="discarded"):
            letters.discard(letter_id)


def test_a_lost_reply_without_the_proxy_is_not_faked(redis_client: redis.Redis) -> None:
    """The proxy forwards everything else untouched (a sanity check of the tool itself)."""
    with LossyProxy("127.0.0.1", redis_client.connection_pool.connection_kwargs["port"]) as p:
        through = connect(p.url)
        through.set(f"k{uuid.uuid4().hex}", "v")
        assert through.ping() and not p.dropped.is_set()
        through.close()
