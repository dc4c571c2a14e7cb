"""A runtime's secrets as the envelope takes them: bytes, with a ``str`` taken as its UTF-8
bytes, so ``Client(secret=os.environ["LEASEGATE_SECRET"])`` signs as the workers check."""

from __future__ import annotations

from collections.abc import Sequence


def utf8_secrets(secret: bytes | str | Sequence[bytes | str]) -> bytes | list[bytes]:
    """A runtime's secret(s) with each ``str`` as its UTF-8 bytes: what a worker makes of the
    same LEASEGATE_SECRET. Anything else but bytes is refused, naming what it got."""
    if isinstance(secret, str):
        return secret.encode()
    if isinstance(secret, bytes | bytearray):
        return bytes(secret)
    found = []
    for one in secret:
        if isinstance(one, str):
            one = one.encode()
        if not isinstance(one, bytes | bytearray):
            raise TypeError(f"secret must be bytes or str (UTF-8), got {type(one).__name__}")
        found.append(bytes(one))
    return found
