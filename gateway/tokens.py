"""The token book: who may call the gateway, as what, for which session keys.

``LEASEGATE_TOKENS_FILE`` is TOML; only SHA-256 digests are stored, so the file can be read
by anyone who deploys it without handing out a bearer token::

    [[token]]
    name = "ops"
    role = "operator"            # operator | viewer | runtime
    sha256 = "<hex digest of the bearer token>"
    [[token]]
    name = "openclaw"
    role = "runtime"
    sessions = ["cron:", "agent:"]
    sha256 = "<hex>"
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class Role(StrEnum):
    OPERATOR = "operator"  # the console and every dead-letter action
    VIEWER = "viewer"      # the console, read only
    RUNTIME = "runtime"    # the runtime API, for its session-key prefixes only


class TokensFileError(ValueError):
    """The token book cannot be used; the message names the entry and the field."""


HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Token:
    name: str
    role: Role
    sha256: str
    sessions: tuple[str, ...] = ()

    def may_use(self, session_key: str) -> bool:
        """A runtime token may only touch session keys under one of its prefixes."""
        return self.role is Role.RUNTIME and any(session_key.startswith(p) for p in self.sessions)

    def can_read_console(self) -> bool:
        return self.role in (Role.OPERATOR, Role.VIEWER)


def digest(bearer: str) -> str:
    return hashlib.sha256(bearer.encode()).hexdigest()


class TokenBook:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self._by_digest = {t.sha256: t for t in tokens}

    def find(self, bearer: str) -> Token | None:
        """The token whose digest matches, compared in constant time."""
        wanted = digest(bearer)
        found = None
        for known, token in self._by_digest.items():
            if hmac.compare_digest(known, wanted):
                found = token
        return found

    def by_name(self, name: str) -> Token | None:
        return next((t for t in self.tokens if t.name == name), None)

    @classmethod
    def load(cls, path: str | Path) -> TokenBook:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise TokensFileError(f"LEASEGATE_TOKENS_FILE: {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise TokensFileError(f"LEASEGATE_TOKENS_FILE: {path} is not TOML: {exc}") from None
        return cls.from_entries(data.get("token", []), str(path))

    @classmethod
    def from_entries(cls, entries: Any, where: str = "tokens") -> TokenBook:
        if not isinstance(entries, list) or not entries:
            raise TokensFileError(f"{where}: no [[token]] entries")
        tokens: list[Token] = []
        for i, entry in enumerate(entries):
            tokens.append(_token(entry, f"{where}: token #{i + 1}"))
        names = [t.name for t in tokens]
        if len(set(names)) != len(names):
            raise TokensFileError(f"{where}: token names must be unique, got {names}")
        if len({t.sha256 for t in tokens}) != len(tokens):
            raise TokensFileError(f"{where}: two tokens share one sha256")
        return cls(tokens)


def _token(entry: Any, where: str) -> Token:
    if not isinstance(entry, dict):
        raise TokensFileError(f"{where} is not a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise TokensFileError(f"{where}: name must be a non-empty string")
    try:
        role = Role(str(entry.get("role")))
    except ValueError:
        raise TokensFileError(f"{where} ({name}): role must be one of "
                              f"{', '.join(r.value for r in Role)}") from None
    sha = entry.get("sha256")
    if not isinstance(sha, str) or not HEX_DIGEST.match(sha.lower()):
        raise TokensFileError(f"{where} ({name}): sha256 must be 64 hex digits (the SHA-256 "
                              "of the bearer token, e.g. `printf %s TOKEN | sha256sum`)")
    sessions = entry.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(s, str) and s for s in sessions):
        raise TokensFileError(f"{where} ({name}): sessions must be a list of non-empty "
                              "session-key prefixes")
    if role is Role.RUNTIME and not sessions:
        raise TokensFileError(f"{where} ({name}): a runtime token needs sessions = [...]: "
                              "the session-key prefixes it may use")
    if role is not Role.RUNTIME and sessions:
        raise TokensFileError(f"{where} ({name}): sessions only applies to role = runtime")
    return Token(name, role, sha.lower(), tuple(sessions))
