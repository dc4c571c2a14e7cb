"""A TCP proxy on loopback that can lose one reply on purpose: it forwards a request that
contains a chosen marker to Redis, then closes the client's connection instead of passing
the reply back. Redis ran the command; the client saw a dropped connection and retries.

That is the exact failure automatic retries turn into double execution, made on demand
instead of hoping a ``CLIENT KILL`` lands between a command and its reply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class LossyProxy:
    """Listen on 127.0.0.1:<port>, forward to ``target``; ``drop_reply_to(marker)`` arms it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.dropped = threading.Event()   # set once a reply was lost on purpose
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def drop_reply_to(self, marker: bytes) -> None:
        """The next request containing ``marker`` reaches Redis; its reply never comes back."""
        with self._lock:
            self._marker = marker
            self.dropped.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            armed = threading.Event()  # this connection carried the marked request
            threading.Thread(target=self._upstream, args=(client, server, armed),
                             daemon=True).start()
            threading.Thread(target=self._downstream, args=(server, client, armed),
                             daemon=True).start()

    def _upstream(self, client: socket.socket, server: socket.socket,
                  armed: threading.Event) -> None:
        while data := _recv(client):
            with self._lock:
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    armed.set()
            # armed before forwarding: the reply cannot overtake the flag
            if not _send(server, data):
                break
        _close(client, server)

    def _downstream(self, server: socket.socket, client: socket.socket,
                    armed: threading.Event) -> None:
        while data := _recv(server):
            if armed.is_set():
                _close(client, server)  # Redis answered; the client never hears it
                self.dropped.set()
                return
            if not _send(client, data):
                break
        _close(client, server)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self.listener.close()
        _close(*sockets)

    def __enter__(self) -> LossyProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
