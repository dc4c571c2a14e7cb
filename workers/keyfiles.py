"""Ed25519 key files: reading the PEM files the environment names (LEASEGATE_SIGNING_KEY,
LEASEGATE_VERIFY_KEYS) with errors naming the variable, and writing a fresh pair for
``leasegate keygen``: ``signing.pem`` (mode 0600, runtimes and the gateway) and ``verify.pem``
(workers)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..broker import check_key_id, generate_pems, key_id, load_signing_key, load_verify_key

SIGNING_FILE = "signing.pem"
VERIFY_FILE = "verify.pem"


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None


def key_files(signing_path: str | None, verify_paths: Sequence[str],
              revoked: Sequence[str]) -> tuple[bytes | None, list[bytes]]:
    """The signing key's PEM (or None) and the verify keys' PEMs, each checked to be an
    Ed25519 key of the right kind; ValueError naming the variable and the file."""
    signing = None
    if signing_path:
        signing = _read("LEASEGATE_SIGNING_KEY", signing_path)
        load_signing_key(signing, f"LEASEGATE_SIGNING_KEY ({signing_path})")
    verify = []
    for path in verify_paths:
        pem = _read("LEASEGATE_VERIFY_KEYS", path)
        load_verify_key(pem, f"LEASEGATE_VERIFY_KEYS ({path})")
        verify.append(pem)
    for one in revoked:
        check_key_id("LEASEGATE_REVOKED_KEYS", one)
    return signing, verify


def write_keypair(out: str | Path) -> tuple[Path, Path, str]:
    """A new key pair in directory ``out`` (created if missing): the paths of signing.pem
    (0600, created exclusively: an existing key is never overwritten) and verify.pem, and
    the key id. FileExistsError if either file exists."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    signing, verify = folder / SIGNING_FILE, folder / VERIFY_FILE
    for path in (signing, verify):
        if path.exists():
            raise FileExistsError(f"{path} exists: keygen never overwrites a key")
    private_pem, public_pem = generate_pems()
    # O_EXCL and mode 0600 at creation: the private key is never readable by others
    fd = os.open(signing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    os.chmod(signing, 0o600)  # whatever the umask left
    verify.write_bytes(public_pem)
    return signing, verify, key_id(load_verify_key(public_pem))
