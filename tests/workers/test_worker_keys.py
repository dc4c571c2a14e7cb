"""Asymmetric envelopes on real processes: ``leasegate keygen`` writes a usable pair, a real
``celery worker`` holding only the public key (no LEASEGATE_SECRET) delivers a real image to a
runtime signing with the private key, a worker refuses to start holding the private key, and
what a worker holds cannot forge an envelope."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from leasegate.broker import (
    Client,
    Envelope,
    EnvelopeError,
    NamespacedArtifactStore,
    generate_pems,
    key_id,
    load_signing_key,
    load_verify_key,
)
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.config import ConfigError, WorkerConfig
from tests.support.celery_workers import WorkerProcess
from tests.support.helpers import wait_until
from tests.workers.test_worker_startup import base_env, start_worker

pytestmark = pytest.mark.e2e


def keygen(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from leasegate.gateway.cli import main; "
                           "raise SystemExit(main())", "keygen", "--out", str(out)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys") / "k"
    done = keygen(out)
    assert done.returncode == 0, done.stderr
    return out


def test_keygen_writes_a_usable_pair_with_a_private_file_of_mode_0600(keys: Path,
                                                                      tmp_path: Path) -> None:
    signing, verify = keys / "signing.pem", keys / "verify.pem"
    assert stat.S_IMODE(signing.stat().st_mode) == 0o600
    private = load_signing_key(signing.read_bytes())
    public = load_verify_key(verify.read_bytes())
    assert key_id(private.public_key()) == key_id(public)
    # the id it prints is the one envelopes carry
    again = keygen(tmp_path / "other")
    assert again.returncode == 0
    printed = again.stdout.split()[2]
    assert printed == key_id(load_verify_key((tmp_path / "other" / "verify.pem").read_bytes()))
    # an existing key is never overwritten
    refused = keygen(keys)
    assert refused.returncode == 2 and "exists" in refused.stderr
    assert load_signing_key(signing.read_bytes()).private_bytes_raw() == \
        private.private_bytes_raw()


def test_a_worker_refuses_to_start_holding_the_signing_key(redis_server: RedisServer,
                                                           keys: Path, tmp_path: Path) -> None:
    env = {**base_env(redis_server.url, tmp_path),
           "LEASEGATE_VERIFY_KEYS": str(keys / "verify.pem"),
           "LEASEGATE_SIGNING_KEY": str(keys / "signing.pem")}
    out = start_worker(env)
    assert out.returncode == 1
    assert "LEASEGATE_SIGNING_KEY" in out.stderr and "LEASEGATE_WORKER_MAY_SIGN" in out.stderr
    # told it is also a runtime, the same configuration passes the key check
    config = WorkerConfig.from_env({**env, "LEASEGATE_WORKER_MAY_SIGN": "1"})
    config.check_worker_keys()


def test_key_files_errors_name_the_variable(keys: Path, tmp_path: Path) -> None:
    missing = WorkerConfig.from_env({"LEASEGATE_VERIFY_KEYS": str(tmp_path / "nope.pem")})
    with pytest.raises(ConfigError, match=r"LEASEGATE_VERIFY_KEYS.*nope\.pem"):
        missing.check_worker_keys()
    private_as_public = WorkerConfig.from_env(
        {"LEASEGATE_VERIFY_KEYS": str(keys / "signing.pem")})
    with pytest.raises(ConfigError, match=r"LEASEGATE_VERIFY_KEYS.*private key"):
        private_as_public.check_worker_keys()
    revoked = WorkerConfig.from_env({"LEASEGATE_VERIFY_KEYS": str(keys / "verify.pem"),
                                     "LEASEGATE_REVOKED_KEYS": "zz"})
    with pytest.raises(ConfigError, match="LEASEGATE_REVOKED_KEYS"):
        revoked.check_worker_keys()
    # verify keys alone need no secret
    alone = WorkerConfig.from_env({"LEASEGATE_VERIFY_KEYS": str(keys / "verify.pem")})
    assert alone.client_keys()["secret"] is None


@pytest.fixture(scope="module")
def verify_only_worker(keys: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with RedisServer() as server:
        proc = WorkerProcess(server.url, f"ed{uuid.uuid4().hex[:8]}",
                             tmp_path_factory.mktemp("worker"),
                             LEASEGATE_VERIFY_KEYS=str(keys / "verify.pem"))
        del proc.env["LEASEGATE_SECRET"]  # this worker holds no secret at all
        proc.env = {k: v for k, v in proc.env.items()
                    if k not in ("LEASEGATE_SIGNING_KEY", "LEASEGATE_INSECURE_DEV")}
        yield proc.start()
        proc.stop()


def test_a_verify_only_worker_delivers_an_image_to_a_runtime_signing_with_ed25519(
        verify_only_worker: WorkerProcess, keys: Path) -> None:
    proc = verify_only_worker
    url, namespace = proc.env["LEASEGATE_REDIS_URL"], proc.env["LEASEGATE_NAMESPACE"]
    assert "LEASEGATE_SECRET" not in proc.env
    client = Client.from_url(url, namespace, signing_key=(keys / "signing.pem").read_bytes())
    run = client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="draw", ttl=30)
    cb = run.submit("image_generate", prompt="a lighthouse", size="256x256")
    got = run.inbox.wait_for([cb], timeout=30)
    assert got[cb].kind == "result" and got[cb].artifacts
    store = NamespacedArtifactStore(str(proc.artifact_dir), namespace)
    with Image.open(store.path(got[cb].artifacts[0].digest)) as image:
        assert image.size == (256, 256)
    assert [e.kind for e in run.inbox.entries()] == ["prompt", "result"]
    # the worker recorded the key id it accepts: no live worker refuses this runtime's key
    assert client.fingerprint == key_id(load_verify_key((keys / "verify.pem").read_bytes()))
    assert client.check_secret() == {}

    # an HMAC runtime (the old way) is refused by this worker: it holds no secret
    hmac_client = Client.from_url(url, namespace, secret="an-old-shared-secret-123")
    old = hmac_client.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="draw", ttl=30)
    old_cb = old.submit("image_generate", prompt="x", size="256x256")

    def refused() -> list[object]:
        return [letter for letter in client.dead_letters.list(reason="unknown_key").letters
                if letter.claimed_session_key == old.session_key]

    wait_until(refused, timeout=30, message="the HMAC envelope's unknown_key dead letter")
    assert old_cb not in {e.callback_id for e in old.inbox.entries()}
    assert [e.kind for e in old.inbox.entries()] == ["prompt"]


def test_a_compromised_worker_cannot_forge_an_envelope(verify_only_worker: WorkerProcess,
                                                       keys: Path) -> None:
    """Everything a worker holds (its environment: the public key, no secret) is tried as a
    signer; no forged callback reaches the run's inbox, each is a dead letter."""
    proc = verify_only_worker
    url, namespace = proc.env["LEASEGATE_REDIS_URL"], proc.env["LEASEGATE_NAMESPACE"]
    runtime = Client.from_url(url, namespace, signing_key=(keys / "signing.pem").read_bytes())
    run = runtime.start_run(f"cron:{uuid.uuid4().hex[:6]}", prompt="draw", ttl=30)

    held = WorkerConfig.from_env(proc.env).client_keys()
    assert held["secret"] is None and held["signing_key"] is None
    stolen = Client.from_url(url, namespace, **held)
    with pytest.raises(RuntimeError, match="verify keys only"):
        stolen.attach(run.session_key, run.run_id).envelope("image_generate")
    public_pem = held["verify_keys"][0]
    with pytest.raises(ValueError):
        load_signing_key(public_pem)
    fields = dict(callback_id=uuid.uuid4().hex, session_key=run.session_key,
                  run_id=run.run_id, fence=run.fence, incarnation=run.lease.incarnation,
                  tool="image_generate", task_args={}, submitted_at_ms=0,
                  deadline_at_ms=2**62)
    forgeries = [
        Envelope.create(public_pem, **fields),  # the public key's bytes as an HMAC secret
        Envelope.create(load_signing_key(generate_pems()[0]), **fields),  # a fresh key
    ]
    for forged in forgeries:
        with pytest.raises(EnvelopeError):
            stolen.gate.open(forged.encode())
        verdict = stolen.gate.deliver(forged.encode(), result={"forged": True})
        assert not verdict.delivered and verdict.reason == "unknown_key"
    assert [e.kind for e in run.inbox.entries()] == ["prompt"]
