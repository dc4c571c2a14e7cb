"""Lua scripts: one file per atomic operation in a ``commands/`` folder, loaded once and
called by SHA (the way BullMQ keeps its ``src/commands``).

A file is named ``<name>-<N>.lua`` where N is the number of KEYS it takes; a header line
``KEYS[N+1..n]`` says it takes more (companion keys). Every call is checked against that, so a
key order mistake fails loudly in Python, not quietly in Lua. A script pulls shared functions
in with ``-- @include "name"``, found only in the include folders its loader was given.
A line ``-- @durable`` marks a script whose write must reach the replicas the loader's
``Durability`` asks for (acquires and verdicts): it is followed by WAIT on its connection.
A line ``-- @constants NAME ...`` lists integers the script reads as Lua locals instead of
per-call ARGV (deployment settings): ``Scripts.bind`` loads a copy with their values, once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import redis

from .durability import Durability, durable_call

INCLUDE = re.compile(r'^-- @include "([\w-]+)"\s*$', re.MULTILINE)
FILE_NAME = re.compile(r"^(?P<name>[a-z][a-z-]*?)-(?P<keys>\d+)$")
VARIADIC = re.compile(r"KEYS\[(\d+)\.\.n\]")
NAMED = re.compile(r"KEYS\[(\d+)\](?!\.)")
DURABLE = re.compile(r"^-- @durable\b", re.MULTILINE)
CONSTANTS = re.compile(r"^-- @constants((?: +[A-Z][A-Z0-9_]*)+)\s*$", re.MULTILINE)

# The ownership layer's shared Lua (now_ms, effective_state, acquire_run, touch_run): upper
# layers name it explicitly when their scripts build on it.
LUA_INCLUDES = Path(__file__).parent / "commands" / "includes"


def render(path: Path, include_dirs: tuple[Path, ...]) -> str:
    """The script's source with every include spliced in, each once."""
    seen: set[str] = set()

    def splice(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        for folder in include_dirs:
            candidate = folder / f"{name}.lua"
            if candidate.is_file():
                return INCLUDE.sub(splice, candidate.read_text())
        raise FileNotFoundError(f"Lua include {name!r} of {path.name} not found in "
                                f"{[str(d) for d in include_dirs]}")

    return INCLUDE.sub(splice, path.read_text())


@dataclass(frozen=True)
class Command:
    """One loaded script: its key count (from the file name), whether it takes more,
    whether its write must be confirmed on replicas (``-- @durable``), the constants it needs
    bound (``-- @constants``) and whether they are."""

    name: str
    keys: int
    variadic: bool
    script: Any
    durable: bool = False
    source: str = ""
    constants: tuple[str, ...] = ()
    bound: bool = False

    def check(self, keys: list[str]) -> None:
        if len(keys) == self.keys or (self.variadic and len(keys) > self.keys):
            return
        wanted = f"at least {self.keys}" if self.variadic else str(self.keys)
        raise ValueError(f"Lua command {self.name!r} takes {wanted} keys, got {len(keys)}")


class Scripts:
    """The scripts of one ``commands/`` folder, registered on one client.

    ``includes``: the folders ``-- @include`` looks in, in order; the folder's own
    ``includes/`` comes first. redis-py's ``Script`` calls EVALSHA and falls back to SCRIPT
    LOAD on NOSCRIPT, so each script crosses the wire once per server. ``durability``: how
    many replicas a ``-- @durable`` script's write must reach (default: none, no WAIT).
    """

    def __init__(self, client: redis.Redis, folder: Path,
                 includes: tuple[Path, ...] = (), durability: Durability | None = None) -> None:
        self._client = client
        self.durability = durability or Durability()
        self._commands: dict[str, Command] = {}
        dirs = (folder / "includes", *includes)
        self.folder = folder
        files = sorted(folder.glob("*.lua"))
        if not files:  # an installation without its data files: refuse now, not 500 later
            state = "has no <name>-<keys>.lua file" if folder.is_dir() else "is missing"
            raise FileNotFoundError(f"Lua commands folder {folder} {state}: this leasegate "
                                    f"installation is incomplete (reinstall the package)")
        for path in files:
            match = FILE_NAME.match(path.stem)
            if match is None:
                raise ValueError(f"Lua command file {path.name} is not named <name>-<keys>.lua")
            source = render(path, dirs)
            count = int(match["keys"])
            header = source.split("]]", 1)[0]
            named = max((int(i) for i in NAMED.findall(header)), default=0)
            extra = VARIADIC.search(header)
            if named != count or (extra and int(extra.group(1)) != count + 1):
                raise ValueError(f"{path.name}: its header lists {named} keys"
                                 f"{' and more' if extra else ''}; its name says {count}")
            name = match["name"]
            declared = CONSTANTS.search(source)
            self._commands[name] = Command(name, count, extra is not None,
                                           client.register_script(source),
                                           DURABLE.search(source) is not None, source,
                                           tuple(declared.group(1).split()) if declared else ())

    def __call__(self, name: str, keys: list[str], args: list[Any],
                 client: Any = None) -> Any:
        command = self._command(name)
        if command.constants and not command.bound:
            raise ValueError(f"Lua command {name!r} needs its constants bound first: "
                             f"Scripts.bind({name!r}, {{{', '.join(command.constants)}}})")
        command.check(keys)
        if command.durable and self.durability.enabled and client is None:
            return durable_call(self._client, self.durability, command.script, keys, args)
        return command.script(keys=keys, args=args, client=client)

    def _command(self, name: str) -> Command:
        try:
            return self._commands[name]
        except KeyError:
            raise LookupError(f"no Lua command {name!r} in {self.folder} (it has "
                              f"{sorted(n for n in self._commands if '@' not in n)})") from None

    def bind(self, name: str, constants: Mapping[str, int]) -> str:
        """Load ``name`` with its ``-- @constants`` as Lua locals of these values (once per
        distinct set) and return the name to call it by. ValueError naming a constant that is
        missing, unknown or not an int: the script would read nil."""
        command = self._command(name)
        given, wanted = set(constants), set(command.constants)
        if given != wanted:
            raise ValueError(f"Lua command {name!r} takes the constants {sorted(wanted)}; "
                             f"missing {sorted(wanted - given)}, unknown {sorted(given - wanted)}")
        for key, value in constants.items():
            if type(value) is not int:
                raise ValueError(f"constant {key} of {name!r} must be an int, not {value!r}")
        prelude = "".join(f"local {key} = {constants[key]}\n" for key in command.constants)
        bound = f"{name}@{hashlib.sha1(prelude.encode()).hexdigest()[:12]}"
        if bound not in self._commands:
            source = prelude + command.source
            self._commands[bound] = replace(command, name=bound, source=source, bound=True,
                                            script=self._client.register_script(source))
        return bound

    def is_durable(self, name: str) -> bool:
        """Whether ``name``'s write waits for replicas (``-- @durable``)."""
        return self._command(name).durable
