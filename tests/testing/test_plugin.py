"""The pytest plugin's fixtures on the project's own app for verdict tests
(``tests.support.verdict_app``): server-side lease controls the gate believes, a real
in-process worker per test, and failure messages that name where a callback went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from leasegate.broker import Client, Route
from leasegate.ownership import LeaseLost, RunState
from leasegate.testing import Deployment, LeaseControl, LeaseNotHeld, Verdicts
from leasegate.testing.worker import running_worker
from leasegate.workers import OwnedTask
from tests.support import verdict_app

ECHO = Route("verdicts.echo", verdict_app.QUEUE)


@pytest.fixture
def leasegate_tasks() -> dict[str, tuple[str, str] | Route]:
    """The plugin's override point: tools this module's client knows without a worker."""
    return {"echo": ECHO}


def test_leasegate_redis_is_a_noeviction_server(leasegate_redis: str) -> None:
    client = redis.Redis.from_url(leasegate_redis)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    client.close()


def test_the_client_has_the_tests_namespace_and_its_tools(
        leasegate_client: Client, leasegate_namespace: str) -> None:
    assert leasegate_client.keys.namespace == leasegate_namespace
    assert leasegate_client.tasks["echo"] == ECHO  # leasegate_tasks, overridden above


def test_expire_ends_the_lease_on_server_time(leasegate_client: Client,
                                             leasegate_lease_control: LeaseControl) -> None:
    run = leasegate_client.start_run("cron:expire", "p", ttl=600)
    leasegate_lease_control.expire(run)
    assert run.status().state is RunState.EXPIRED
    with pytest.raises(LeaseLost):
        run.renew()  # the runtime learns it the way it would after a real expiry
    newer = leasegate_client.start_run("cron:expire", "p", ttl=600)
    newer.release()
    with pytest.raises(LeaseNotHeld, match="is released, not live or parked"):
        leasegate_lease_control.expire(newer)


def test_supersede_starts_the_next_run_of_the_session(
        leasegate_client: Client, leasegate_lease_control: LeaseControl) -> None:
    run = leasegate_client.start_run("cron:supersede", "p", ttl=600)
    newer = leasegate_lease_control.supersede(run)
    assert newer.session_key == run.session_key and newer.fence == run.fence + 1
    assert run.status().state is RunState.SUPERSEDED


def test_a_parked_run_gets_its_callback_and_a_resume_signal(
        leasegate_client: Client, leasegate_worker: Any,
        leasegate_lease_control: LeaseControl, leasegate_verdicts: Verdicts) -> None:
    leasegate_worker(verdict_app.app)
    run = leasegate_client.start_run("chat:parked", "p", ttl=600)
    leasegate_lease_control.park(run, until=120)
    assert run.status().state is RunState.PARKED
    callback_id = run.submit("echo", size=1)
    assert leasegate_verdicts.assert_delivered(callback_id).payload == {"size": 1}
    assert run.wait_resume(timeout=30) == callback_id


def test_expired_before_the_worker_starts_is_skipped_as_lease_expired(
        leasegate_client: Client, leasegate_worker: Any,
        leasegate_lease_control: LeaseControl, leasegate_verdicts: Verdicts) -> None:
    run = leasegate_client.start_run("chat:skipped", "p", ttl=600)
    callback_id = run.submit("echo", size=2)
    leasegate_lease_control.expire(run)
    leasegate_worker(verdict_app.app)
    letter = leasegate_verdicts.assert_quarantined(callback_id, reason="lease_expired")
    assert letter.kind == "error" and letter.payload == {"error": "skipped",
                                                         "reason": "lease_expired"}


def test_failure_messages_name_where_the_callback_went(
        leasegate_client: Client, leasegate_worker: Any,
        leasegate_lease_control: LeaseControl, leasegate_verdicts: Verdicts) -> None:
    run = leasegate_client.start_run("chat:messages", "p", ttl=600)
    pending = run.submit("echo", size=3)  # no worker yet: it waits on the queue
    with pytest.raises(AssertionError, match=(
            f"callback {pending} was not delivered: it was still pending in run "
            f"{run.run_id} of session 'chat:messages': no verdict yet after 0.1 s")):
        leasegate_verdicts.assert_delivered(pending, timeout=0.1)

    leasegate_worker(verdict_app.app)
    delivered = leasegate_verdicts.assert_delivered(pending)
    with pytest.raises(AssertionError, match=(
            f"not quarantined with reason 'lease_expired': it was delivered to the inbox of "
            f"run {run.run_id} of session 'chat:messages' as entry 2 .kind result.")):
        leasegate_verdicts.assert_quarantined(pending, reason="lease_expired")
    assert delivered.seq == 2

    leasegate_lease_control.after_work(verdict_app.echo,
                                       lambda: leasegate_lease_control.expire(run))
    late = run.submit("echo", size=4)
    letter = leasegate_verdicts.assert_quarantined(late)
    with pytest.raises(AssertionError, match=(
            f"callback {late} was not delivered: it was quarantined as dead letter "
            f"{letter.id} with reason 'lease_expired'")):
        leasegate_verdicts.assert_delivered(late)
    with pytest.raises(AssertionError, match="was not quarantined with reason 'superseded'"):
        leasegate_verdicts.assert_quarantined(late, reason="superseded")
    with pytest.raises(AssertionError, match="it was unknown: never submitted"):
        leasegate_verdicts.assert_quarantined("no-such-callback", timeout=0)


def test_after_work_is_undone_with_the_fixture(leasegate_client: Client) -> None:
    task = verdict_app.echo
    with LeaseControl(leasegate_client).active() as control:
        control.after_work(task, lambda: None)
        assert "run" in vars(task)
    assert "run" not in vars(task) and isinstance(task, OwnedTask)


def test_a_stopped_worker_gives_back_its_queue_claims(leasegate_redis: str,
                                                      leasegate_secret: bytes,
                                                      tmp_path: Path) -> None:
    """Consecutive tests have their own namespaces on the same queues: each worker's claim
    must be gone when the next one starts, or that worker refuses to start."""
    claims = redis.Redis.from_url(leasegate_redis)
    claim = f"leasegate:queue-claim:{verdict_app.QUEUE}"
    for namespace in ("lgtclaimone", "lgtclaimtwo"):
        deployment = Deployment(leasegate_redis, namespace, leasegate_secret, tmp_path)
        client = Client(claims, namespace, secret=leasegate_secret)
        with running_worker(verdict_app.app, deployment, client, [verdict_app.QUEUE]):
            assert claims.get(claim) == namespace.encode()
        assert claims.get(claim) is None
    claims.close()


def test_a_worker_serves_every_queue_of_its_app_unless_told(
        leasegate_client: Client, leasegate_deployment: Deployment, leasegate_worker: Any,
        leasegate_verdicts: Verdicts) -> None:
    with running_worker(verdict_app.app, leasegate_deployment, leasegate_client,
                        [verdict_app.QUEUE]):
        pass  # an earlier worker that served one queue: Celery keeps its selection
    leasegate_worker(verdict_app.app)
    run = leasegate_client.start_run("chat:queues", "p", ttl=600)
    image = run.submit("image_generate", prompt="a fox", size="256x256")  # the media queue
    echo = run.submit("echo", size=5)  # the verdicts queue
    assert leasegate_verdicts.assert_delivered(image).artifacts
    assert leasegate_verdicts.assert_delivered(echo).payload == {"size": 5}
