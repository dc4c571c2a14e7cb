"""A local Redis Cluster of our own: cluster-enabled redis-server processes joined by
``redis-cli --cluster create`` (3 primaries + 3 replicas unless told otherwise), for tests and
drills. ``kill_primary`` is the failure the drills inject: a primary SIGKILLed, its replica
promoted by the cluster itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.crc import key_slot

from .redis_server import RedisServer, RedisTls, find_redis_server

NODE_TIMEOUT_MS = 1000   # how long a primary may be silent before the others fail it over


def find_redis_cli(server: str) -> str:
    """The redis-cli next to ``server`` (same version), else the one on PATH."""
    beside = Path(server).with_name("redis-cli")
    if os.access(beside, os.X_OK):
        return str(beside)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    raise FileNotFoundError(f"no redis-cli beside {server} or on PATH: it creates the cluster")


class WholeCluster(redis.RedisCluster):
    """A cluster client whose KEYS asks every primary (redis-py asks one node): tests list a
    namespace's keys with it as they do on one server."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", redis.RedisCluster.PRIMARIES)
        return super().keys(pattern, **kwargs)


class RedisClusterNodes:
    """``primaries`` primaries with ``replicas`` replicas each, on loopback ports.

    ``tls``: every node speaks TLS only, the cluster bus and replication included."""

    def __init__(self, primaries: int = 3, replicas: int = 1, binary: str | None = None,
                 tls: RedisTls | None = None) -> None:
        self.binary = binary or find_redis_server()
        self.tls = tls
        self.replicas = replicas
        tls_args = ("--tls-cluster", "yes", "--tls-replication", "yes") if tls else ()
        self.nodes = [RedisServer(self.binary, tls=tls, extra_args=(
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "no",
            # a replica may take over however stale: the drills kill primaries on purpose
            "--cluster-replica-validity-factor", "0", *tls_args))
            for _ in range(primaries * (1 + replicas))]

    @property
    def url(self) -> str:
        """The first live node's URL: any node's URL reaches the whole cluster. By the address
        the nodes announce (127.0.0.1, which the test certificates carry too): a startup node
        named otherwise would be a second node object whose connection is never closed."""
        url = next(node.url for node in self.nodes if node.process is not None)
        return url.replace("://localhost:", "://127.0.0.1:")

    def client(self, **options: object) -> redis.RedisCluster:
        if self.tls:
            options = {**self.tls.client_options(), **options}
        return WholeCluster.from_url(self.url, **options)

    def version(self) -> str:
        return self.nodes[0].version()

    def start(self, timeout: float = 30.0) -> RedisClusterNodes:
        for node in self.nodes:
            node.start()
        tls = (["--tls", "--cacert", self.tls.ca, "--cert", self.tls.cert, "--key",
                self.tls.key] if self.tls else [])
        created = subprocess.run(
            [find_redis_cli(self.binary), *tls, "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}"
                               f"{created.stderr[-2000:]}")
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every live node says cluster_state:ok and every slot has a live primary."""
        deadline = time.monotonic() + timeout
        while True:
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become healthy: "
                                   + " | ".join(n.log_tail(3) for n in self.nodes))
            time.sleep(0.1)  # poll with a deadline: the cluster announces nothing we can block on

    def _healthy(self) -> bool:
        live = [node for node in self.nodes if node.process is not None]
        ports = {node.port for node in live}
        try:
            for node in live:
                with node.client(socket_timeout=1) as client:
                    replication = client.info("replication")
                    if replication.get("role") == "slave" and \
                            replication.get("master_link_status") != "up" and \
                            int(replication.get("master_port", 0)) in ports:
                        return False  # not yet in sync: it could not take over
                    info = client.cluster("info")
                    if info.get("cluster_state") != "ok" or \
                            int(info.get("cluster_slots_ok", 0)) != 16384:
                        return False
                    # every slot served by a live primary: a killed one's replica took over
                    if any(int(primary[1]) not in ports for _, _, primary, *_ in
                           client.execute_command("CLUSTER", "SLOTS")):
                        return False
        except redis.exceptions.RedisError:
            return False
        return True

    def primaries(self) -> list[RedisServer]:
        """The live nodes that are primaries now."""
        found = []
        for node in self.nodes:
            if node.process is None:
                continue
            with node.client(socket_timeout=1) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node)
        return found

    def node_of(self, key: str) -> RedisServer:
        """The live primary that serves ``key``'s slot now."""
        slot = key_slot(key.encode())
        live = [node for node in self.nodes if node.process is not None]
        with live[0].client(socket_timeout=1) as client:
            for lo, hi, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(lo) <= slot <= int(hi):
                    return next(node for node in live if node.port == int(primary[1]))
        raise LookupError(f"no live primary serves slot {slot}")

    def kill_primary(self, node: RedisServer | None = None, timeout: float = 30.0) -> RedisServer:
        """SIGKILL a primary (the first one unless named) and wait until its replica has been
        promoted and the cluster is whole again. Returns the killed node."""
        victim = node or self.primaries()[0]
        victim.kill()
        self.wait_healthy(timeout)
        return victim

    def flushall(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterNodes:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

