"""Secret fingerprint records stay bounded, against a real redis-server: a runtime is named by
host and pid, so every restart of every runtime process is a new name; however many come and
go, ``<ns>:fingerprints:<role>`` keeps at most ``MAX_RECORDS`` (the most recent), drops what
is older than ``RECENT`` and lapses ``RECENT`` after its last record, while the readers
(``recent``: the worker at start-up, the runtime's check, ``doctor``) still see every recent
process and one record per name."""

from __future__ import annotations

import redis

from leasegate.broker import Client
from leasegate.broker.fingerprints import (
    MAX_RECORDS,
    RECENT,
    fingerprint_key,
    recent,
    record,
    secret_fingerprint,
)
from leasegate.ownership import as_text
from tests.conftest import SECRET
from tests.support.helpers import server_time


def test_runtime_records_are_bounded_however_many_processes_come_and_go(
        broker_client: Client, redis_client: redis.Redis) -> None:
    keys, key = broker_client.keys, fingerprint_key(broker_client.keys, "runtime")
    pipe = redis_client.pipeline(transaction=False)
    names = [f"host-{i // 100}:{1000 + i}" for i in range(MAX_RECORDS + 50)]
    for i, name in enumerate(names):  # as many processes, each recording once, oldest first
        broker_client.scripts("fingerprint", [key],
                              [f"{i:016x}|{name}", int(RECENT * 1000), MAX_RECORDS], client=pipe)
    kept = pipe.execute()
    assert kept[-1] == MAX_RECORDS and max(kept) == MAX_RECORDS
    assert redis_client.zcard(key) == MAX_RECORDS

    latest = record(broker_client.scripts, keys, "runtime", "host-last:1", ["feedfacefeedface"])
    assert latest == MAX_RECORDS
    found = recent(redis_client, keys, "runtime", within=3600.0)
    assert len(found) == MAX_RECORDS and found["host-last:1"] == ["feedfacefeedface"]
    assert names[-1] in found and names[51] in found  # the most recent are kept...
    assert not set(names[:51]) & set(found)          # ...the oldest went first
    assert 0 < redis_client.pttl(key) <= RECENT * 1000  # and the key lapses with its writers


def test_one_record_per_name_on_server_time_and_stale_records_go(
        broker_client: Client, redis_client: redis.Redis) -> None:
    keys, key = broker_client.keys, fingerprint_key(broker_client.keys, "worker")
    now = server_time(redis_client)
    # a worker that recorded more than RECENT ago and never again (its host is gone)
    redis_client.zadd(key, {"0123456789abcdef|gone@host": int((now - RECENT - 60) * 1000)})
    record(broker_client.scripts, keys, "worker", "w1@host", ["aaaaaaaaaaaaaaaa"])
    record(broker_client.scripts, keys, "worker", "w1@host",  # restarted with a rotation
           ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"])
    assert redis_client.zrange(key, 0, -1) == [b"bbbbbbbbbbbbbbbb,aaaaaaaaaaaaaaaa|w1@host"]
    score = float(redis_client.zscore(key, "bbbbbbbbbbbbbbbb,aaaaaaaaaaaaaaaa|w1@host") or 0)
    assert now * 1000 - 1000 <= score <= server_time(redis_client) * 1000  # Redis time
    assert recent(redis_client, keys, "worker") == {
        "w1@host": ["bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa"]}


def test_a_runtime_records_its_signing_fingerprint_with_an_expiry(
        broker_client: Client, redis_client: redis.Redis) -> None:
    broker_client.start_run("cron:fingerprint", prompt="p", ttl=30)  # records at once
    key = fingerprint_key(broker_client.keys, "runtime")
    [member] = [as_text(m) for m in redis_client.zrange(key, 0, -1)]
    assert member.startswith(f"{secret_fingerprint(SECRET)}|")
    assert 0 < redis_client.pttl(key) <= RECENT * 1000
    broker_client.check_secret()  # the same process again: still one record
    assert redis_client.zcard(key) == 1
