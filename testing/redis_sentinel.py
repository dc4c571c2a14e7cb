"""A replicated Redis watched by sentinels, of our own: for failover tests and drills.

A primary, one replica (``--replicaof``) and three sentinels (quorum 2) on free loopback
ports; ``url`` is the ``redis+sentinel://`` URL leasegate connects with. With ``tls`` every
one of them speaks TLS only (replication and the sentinels' own links too) and ``url`` is
``rediss+sentinel://``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from .redis_server import RedisServer, RedisTls, find_redis_server, free_port, terminate

SERVICE = "mymaster"


class SentinelProcess:
    """One ``redis-server <conf> --sentinel`` child process."""

    def __init__(self, binary: str, directory: str, primary_port: int,
                 down_after_ms: int, failover_timeout_ms: int,
                 tls: RedisTls | None = None) -> None:
        self.binary = binary
        self.tls = tls
        self.directory = directory
        self.primary_port = primary_port
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _write_conf(self) -> str:
        path = os.path.join(self.directory, "sentinel.conf")  # sentinel rewrites it: ours alone
        # over TLS: no clear-text port; tls-replication makes its links to servers TLS too
        listen = (f"port 0\ntls-port {self.port}\ntls-cert-file {self.tls.cert}\n"
                  f"tls-key-file {self.tls.key}\ntls-ca-cert-file {self.tls.ca}\n"
                  "tls-replication yes\n") if self.tls else f"port {self.port}\n"
        Path(path).write_text(
            f"{listen}bind 127.0.0.1\nprotected-mode no\ndaemonize no\n"
            f"dir {self.directory}\nlogfile {os.path.join(self.directory, 'sentinel.log')}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")
        return path

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(5):
            conf = self._write_conf()
            self.process = subprocess.Popen([self.binary, conf, "--sentinel"],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            if wait_for(lambda: self._pings(), timeout, self.process):
                return
            terminate(self.process)
            self.port = free_port()  # lost a race for the port: take another
        raise RuntimeError(f"sentinel did not start: {self.log_tail()}")

    def _pings(self) -> bool:
        return bool(self.client().ping())

    def client(self) -> Any:
        """A client of this sentinel (its SENTINEL replies are untyped in redis-py)."""
        tls: dict[str, Any] = {"ssl": True, **self.tls.client_options()} if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                           socket_connect_timeout=1, decode_responses=True, **tls)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.directory, "sentinel.log").read_text()
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process:
            terminate(self.process)
        self.process = None


def wait_for(probe: object, timeout: float,
             process: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll ``probe()`` (errors count as not yet) until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if probe():  # type: ignore[operator]
                return True
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.05)  # poll with a deadline: nothing to block on
    return False


class SentinelGroup:
    """Primary + replica + three sentinels. ``kill_primary()`` is a crash; ``wait_failover()``
    returns once the sentinels name the replica as the new primary."""

    def __init__(self, binary: str | None = None, *, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 3000, tls: RedisTls | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.tls = tls
        self._tmp = tempfile.TemporaryDirectory(prefix="leasegate-sentinel-")
        self.primary = RedisServer(self.binary, directory=self._dir("primary"), tls=tls,
                                   extra_args=self._replication())
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _replication(self, *args: str) -> tuple[str, ...]:
        """A server's extra arguments: replicate over TLS when the group speaks TLS."""
        return (*(("--tls-replication", "yes") if self.tls else ()), *args)

    def _dir(self, name: str) -> str:
        path = os.path.join(self._tmp.name, name)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        return f"{scheme}://{hosts}/{SERVICE}/0"

    def start(self, timeout: float = 30.0) -> SentinelGroup:
        self.primary.start()
        self.replica = RedisServer(self.binary, directory=self._dir("replica"), tls=self.tls,
                                   extra_args=self._replication(
                                       "--replicaof", "127.0.0.1", str(self.primary.port)))
        self.replica.start()
        for i in range(3):
            sentinel = SentinelProcess(self.binary, self._dir(f"sentinel{i}"),
                                       self.primary.port, self.down_after_ms,
                                       self.failover_timeout_ms, self.tls)
            sentinel.start()
            self.sentinels.append(sentinel)
        if not wait_for(self._settled, timeout):
            raise RuntimeError("sentinels did not settle (replica linked, each sentinel "
                               f"knowing the other two): {self.sentinels[0].log_tail()}")
        return self

    def _settled(self) -> bool:
        assert self.replica is not None
        info = self.replica.client().info("replication")
        if info.get("master_link_status") != "up":
            return False
        for sentinel in self.sentinels:
            master = sentinel.client().sentinel_master(SERVICE)
            if int(master["num-other-sentinels"]) < 2 or int(master["num-slaves"]) < 1:
                return False
        return True

    def primary_port(self) -> int:
        """The port the sentinels name as the primary now."""
        host_port = self.sentinels[0].client().sentinel_get_master_addr_by_name(SERVICE)
        return int(host_port[1])

    def kill_primary(self) -> RedisServer:
        """SIGKILL whichever server is the primary now; returns it (dead)."""
        port = self.primary_port()
        server = self.primary if self.primary.port == port else self.replica
        assert server is not None
        server.kill()
        return server

    def wait_failover(self, old_port: int, timeout: float = 60.0) -> int:
        """Block until every sentinel names a primary other than ``old_port`` and that
        server answers as a master; its port."""
        def promoted() -> bool:
            ports = {int(s.client().sentinel_get_master_addr_by_name(SERVICE)[1])
                     for s in self.sentinels}
            if len(ports) != 1 or old_port in ports:
                return False
            server = self._server(ports.pop())
            return server.client().info("replication").get("role") == "master"
        if not wait_for(promoted, timeout):
            raise RuntimeError(f"no failover within {timeout} s: {self.sentinels[0].log_tail()}")
        return self.primary_port()

    def rejoin_old_primary(self, new_port: int, timeout: float = 30.0) -> None:
        """Start the server killed last as a replica of ``new_port`` (empty, it syncs all);
        returns once the new primary has it as a linked replica again."""
        old = self.primary if self.primary.port != new_port else self.replica
        assert old is not None and old.process is None
        old.extra_args = self._replication("--replicaof", "127.0.0.1", str(new_port))
        old.start()
        if self.primary.port != new_port:  # the names follow the roles
            self.primary, self.replica = self._server(new_port), old
        if not wait_for(lambda: old.client().info("replication").get("master_link_status")
                        == "up", timeout):
            raise RuntimeError(f"the old primary did not rejoin as a replica: {old.log_tail()}")

    def _server(self, port: int) -> RedisServer:
        for server in (self.primary, self.replica):
            if server is not None and server.port == port:
                return server
        raise LookupError(f"no server of this group on port {port}")

    def pause_replica(self) -> None:
        """SIGSTOP the replica: it stays connected and acknowledges nothing."""
        assert self.replica and self.replica.process
        os.kill(self.replica.process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica and self.replica.process
        os.kill(self.replica.process.pid, signal.SIGCONT)

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in (self.replica, self.primary):
            if server is not None:
                if server.process is not None and server.process.poll() is None:
                    os.kill(server.process.pid, signal.SIGCONT)  # a paused one must hear TERM
                server.stop()
        self._tmp.cleanup()

    def __enter__(self) -> SentinelGroup:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
