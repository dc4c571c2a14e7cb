"""A redis-server with the generated ACL file (workers/acl.py) and a login per role, for the
ACL tests: plus an ``admin`` user of the tests' own that makes and inspects what the roles
may not touch."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from leasegate.broker import Client
from leasegate.testing.redis_server import RedisServer
from leasegate.workers.acl import acl_file, load_passwords, user_name

from .celery_workers import SECRET

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


class Acl:
    def __init__(self, server: RedisServer, namespace: str, passwords: dict[str, str]) -> None:
        self.server, self.namespace, self.passwords = server, namespace, passwords

    def url(self, role: str) -> str:
        return self.server.url_for(user_name(self.namespace, role), self.passwords[role])

    def redis(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(role))

    def client(self, role: str) -> Client:
        return Client.from_url(self.url(role), self.namespace, secret=SECRET)

    def env(self, role: str) -> dict[str, str]:
        """A leasegate process's environment, logged in as ``role``."""
        return {**os.environ, "LEASEGATE_REDIS_URL": self.url(role),
                "LEASEGATE_SECRET": SECRET, "LEASEGATE_NAMESPACE": self.namespace}

    def celery(self, role: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "celery", "-A", "leasegate.workers",
                               *args], env=self.env(role), capture_output=True, text=True,
                              timeout=120, check=False)


@contextmanager
def acl_server(redis_binary: str, folder: Path) -> Iterator[Acl]:
    """A redis-server loading the generated ACL file of a fresh namespace (random passwords)."""
    namespace = f"acl{uuid.uuid4().hex[:6]}"
    passwords = load_passwords(folder / "passwords")  # created: random, mode 0600
    text = acl_file(namespace, ["celery", "media"], passwords)
    (folder / "users.acl").write_text(text + f"user admin on >{ADMIN_PASSWORD} ~* &* +@all\n")
    with RedisServer(redis_binary, aclfile=str(folder / "users.acl"), username="admin",
                     password=ADMIN_PASSWORD) as server:
        yield Acl(server, namespace, passwords)
