"""A real ``leasegate serve`` process (uvicorn) on a free loopback port, with a token book of
one token per role, and a small HTTP client that carries a token."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from leasegate.testing.redis_server import RedisTls, terminate

from .celery_workers import SECRET
from .helpers import wait_for_value

# bearer tokens of the book every test server gets; their SHA-256 is what the file holds
TOKENS = {"operator": "op-token-0123456789", "viewer": "view-token-0123456789",
          "runtime": "rt-token-0123456789", "other": "rt-other-0123456789"}
RUNTIME_SESSIONS = ["cron:", "agent:"]


def token_book(path: Path) -> Path:
    def sha(role: str) -> str:
        return hashlib.sha256(TOKENS[role].encode()).hexdigest()

    path.write_text(
        f'[[token]]\nname = "ops"\nrole = "operator"\nsha256 = "{sha("operator")}"\n'
        f'[[token]]\nname = "watcher"\nrole = "viewer"\nsha256 = "{sha("viewer")}"\n'
        f'[[token]]\nname = "openclaw"\nrole = "runtime"\nsessions = {RUNTIME_SESSIONS!r}\n'
        f'sha256 = "{sha("runtime")}"\n'
        f'[[token]]\nname = "elsewhere"\nrole = "runtime"\nsessions = ["other:"]\n'
        f'sha256 = "{sha("other")}"\n'.replace("'", '"'))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(Exception):
    """The port chosen as free was bound by another process before serve could bind it."""


class GatewayProcess:
    """``leasegate serve`` as a child process; ``url`` once ``/healthz`` answers."""

    def __init__(self, redis_url: str, namespace: str, workdir: Path, *,
                 tokens: bool = True, args: tuple[str, ...] = (), https: RedisTls | None = None,
                 script: str | None = None, cwd: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # https: serve with that certificate; clients trust its CA (and only that)
        self.verify: ssl.SSLContext | bool = True
        if https:
            self.url = f"https://localhost:{self.port}"
            self.verify = ssl.create_default_context(cafile=https.ca)
            args = ("--ssl-certfile", https.cert, "--ssl-keyfile", https.key, *args)
        self.log_path = workdir / f"serve-{self.port}.log"
        self.env = {**os.environ, "LEASEGATE_REDIS_URL": redis_url, "LEASEGATE_SECRET": SECRET,
                    "LEASEGATE_NAMESPACE": namespace,
                    "LEASEGATE_ARTIFACT_DIR": str(workdir / "artifacts"), **env}
        if tokens:
            self.env["LEASEGATE_TOKENS_FILE"] = str(token_book(workdir / "tokens.toml"))
        # script: another installation's `leasegate` console script (the wheel's, in a venv)
        launcher = [script] if script else [sys.executable, "-c", "from leasegate.gateway.cli "
                                            "import main; raise SystemExit(main())"]
        self.args = [*launcher, "serve", "--port", str(self.port), "--log-level", "warning",
                     *args]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        for _ in range(4):
            try:
                return self._start(timeout)
            except PortTaken:  # another process bound the free port first: take another
                self._use_port(free_port())
        return self._start(timeout)

    def _use_port(self, port: int) -> None:
        self.url = self.url.replace(f":{self.port}", f":{port}")
        self.args[self.args.index("--port") + 1] = str(port)
        self.port = port

    def _start(self, timeout: float) -> GatewayProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        start = self.log_path.stat().st_size
        self.process = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=self.cwd)
        process = self.process

        def healthy() -> bool:
            if process.poll() is not None:
                self.stop()
                if "address already in use" in self.log()[start:]:
                    raise PortTaken(self.port)
                raise AssertionError(f"leasegate serve exited ({process.returncode}):\n"
                                     f"{self.log()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1.0,
                                 verify=self.verify).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for_value(healthy, timeout, 0.05, "leasegate serve to answer /healthz",
                           lambda: "\n" + self.log())
        except AssertionError:
            self.stop()
            raise
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, role: str | None = "operator", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        kwargs.setdefault("verify", self.verify)
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            terminate(self.process, 10.0)
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
