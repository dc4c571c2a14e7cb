"""Draining dead letters through a consumer group: in order, archived with acknowledgement,
nothing lost and nothing repeated but the letter in flight when a drainer dies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from leasegate.broker import Client, DeadLetter
from leasegate.testing.redis_server import RedisServer
from tests.broker.test_deadletters import malformed, released, sk, superseded
from tests.conftest import SECRET


def in_order(ids: list[str]) -> list[str]:
    """Drain order: stream ids as numbers, merged across the shards."""
    return sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


def groups_of(client: Client, group: str) -> list[str]:
    """The shards' streams that have ``group`` (a drain makes it on every shard it visits)."""
    streams = [client.keys.dead_letters(shard) for shard in client.keys.shards]
    return [s for s in streams if client.redis.exists(s) and any(
        g["name"].decode() == group for g in client.redis.xinfo_groups(s))]


def pending(client: Client, group: str) -> int:
    return sum(int(client.redis.xpending(stream, group)["pending"])
               for stream in groups_of(client, group))


def pending_ids(client: Client, group: str) -> list[str]:
    rows = [row for stream in groups_of(client, group)
            for row in client.redis.xpending_range(stream, group, "-", "+", 100)]
    return in_order([row["message_id"].decode() for row in rows])


def test_drain_hands_over_in_order_and_archives(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    letters = released(broker_client, 5) + superseded(broker_client, 3) + malformed(
        broker_client, 2)
    seen: list[DeadLetter] = []
    assert dl.drain(seen.append, consumer="c1", batch=3, by="exporter") == 10
    assert [letter.id for letter in seen] == in_order(letters)
    assert all(letter.state == "quarantined" for letter in seen)  # as handed over
    for dlq_id in letters:
        after = dl.get(dlq_id)
        assert after.state == "archived"
        assert [(h["state"], h["by"]) for h in after.history][-1] == ("archived", "exporter")
    assert pending(broker_client, "drain") == 0
    assert dl.drain(seen.append, consumer="c1") == 0 and len(seen) == 10
    assert dl.stats().by_state["archived"] == 10
    assert sorted(letter.id for letter in dl.list().letters) == sorted(letters)  # still listed


def test_drain_skips_what_is_no_longer_quarantined(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    key = sk()
    [replayed, discarded, kept] = released(broker_client, 3, session_key=key)
    dl.replay(replayed, to=broker_client.start_run(key, prompt="x", ttl=30))
    dl.discard(discarded)
    seen: list[str] = []
    assert dl.drain(lambda letter: seen.append(letter.id), consumer="c1") == 1
    assert seen == [kept]
    assert dl.get(replayed).state == "redelivered" and dl.get(discarded).state == "discarded"
    assert pending(broker_client, "drain") == 0


def test_drain_by_reason_leaves_other_letters_for_other_drains(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    rel = released(broker_client, 3)
    sup = superseded(broker_client, 2)
    seen: list[str] = []
    assert dl.drain(lambda letter: seen.append(letter.id), reason="superseded") == 2
    assert seen == in_order(sup)
    assert all(dl.get(i).state == "quarantined" for i in rel)
    assert dl.drain(lambda letter: seen.append(letter.id)) == 3
    assert seen == in_order(sup) + in_order(rel)
    with pytest.raises(ValueError, match="reason"):
        dl.drain(seen.append, reason="lost")  # type: ignore[arg-type]


def test_handler_failure_stops_and_leaves_the_letter_pending(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    letters = in_order(released(broker_client, 5))
    seen: list[str] = []

    def flaky(letter: DeadLetter) -> None:
        seen.append(letter.id)
        if len(seen) == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full") as failure:
        dl.drain(flaky, consumer="c1")
    assert letters[2] in " ".join(failure.value.__notes__)
    assert [dl.get(i).state for i in letters] == ["archived"] * 2 + ["quarantined"] * 3
    # the failed letter, and the rest of its batch, stay pending for this consumer
    assert pending_ids(broker_client, "drain") == letters[2:]
    assert dl.drain(flaky, consumer="c1") == 3  # its own pending letter first
    assert seen == letters[:3] + letters[2:]
    assert pending(broker_client, "drain") == 0


def test_another_consumer_claims_only_after_claim_idle(broker_client: Client) -> None:
    dl = broker_client.dead_letters
    letters = in_order(released(broker_client, 3))

    def fail(letter: DeadLetter) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        dl.drain(fail, consumer="dead", batch=1)  # holds just the letter it failed on
    seen: list[str] = []
    # the dead consumer's letter is left to it for claim_idle; the rest go on
    assert dl.drain(lambda letter: seen.append(letter.id), consumer="next",
                    claim_idle=600) == 2
    assert seen == letters[1:]
    assert dl.drain(lambda letter: seen.append(letter.id), consumer="next", claim_idle=0) == 1
    assert seen == letters[1:] + letters[:1]
    assert pending(broker_client, "drain") == 0


CHILD = textwrap.dedent("""
    import os, sys
    from leasegate.ownership import connect
    from leasegate.broker import Client

    url, namespace, secret, log, stop_after = sys.argv[1:]
    client = Client(connect(url), namespace, secret=secret.encode())
    count = 0

    def handler(letter):
        global count
        with open(log, "a") as file:
            file.write(letter.id + "\\n")
            file.flush()
            os.fsync(file.fileno())
        count += 1
        if count == int(stop_after):
            os._exit(1)  # dies mid-letter: handed over, never acknowledged

    client.dead_letters.drain(handler, consumer="child", batch=4)
    sys.exit(3)  # not reached: the drain had more than stop_after letters
""")


@pytest.mark.faults
def test_a_drainer_killed_mid_letter_loses_nothing_and_repeats_only_that_letter(
        broker_client: Client, redis_server: RedisServer, namespace: str,
        tmp_path: Path) -> None:
    dl = broker_client.dead_letters
    letters = in_order(released(broker_client, 9) + superseded(broker_client, 3))
    log = tmp_path / "handled.log"
    child = subprocess.run([sys.executable, "-c", CHILD, redis_server.url, namespace,
                            SECRET.decode(), str(log), "5"], capture_output=True, timeout=60)
    assert child.returncode == 1, child.stderr.decode()
    first = log.read_text().split()
    assert first == letters[:5]
    in_flight = letters[4]
    assert dl.get(in_flight).state == "quarantined"  # handed over, not archived
    assert [dl.get(i).state for i in letters[:4]] == ["archived"] * 4
    assert pending_ids(broker_client, "drain")[0] == in_flight

    def handler(letter: DeadLetter) -> None:
        with log.open("a") as file:
            file.write(letter.id + "\n")

    assert dl.drain(handler, consumer="survivor", claim_idle=0) == 8
    handled = log.read_text().split()
    assert handled == letters[:5] + letters[4:]
    assert {i for i in handled if handled.count(i) > 1} == {in_flight}
    for dlq_id in letters:
        states = [h["state"] for h in dl.get(dlq_id).history]
        assert states == ["quarantined", "archived"]  # acknowledged exactly once
    assert pending(broker_client, "drain") == 0


def test_pending_entries_of_letters_gone_meanwhile_are_acknowledged(
        redis_client: redis.Redis, namespace: str) -> None:
    client = Client(redis_client, namespace, secret=SECRET)
    dl = client.dead_letters
    letters = in_order(released(client, 3))

    def fail(letter: DeadLetter) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        dl.drain(fail, consumer="c1")
    dl.discard(letters[0])  # its pending stream entry now has no data
    seen: list[str] = []
    assert dl.drain(lambda letter: seen.append(letter.id), consumer="c1") == 2
    assert seen == letters[1:]
    assert pending(client, "drain") == 0
