"""Every ``ERR_<NAME>`` a Lua command's header names carries the number of ``ErrorCode.<NAME>``.

The headers are the documentation of each command's replies, and ``ErrorCode`` is what the
Python reads them with: a header that drifts from the enum misleads whoever reads it next.
A header's reply line is ``{<code>, ...}   ERR_<NAME>...``: the tuple's first number, then the
name, on one line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leasegate.ownership import ErrorCode, LeaseLost, Registry, shard_of

ROOT = Path(__file__).resolve().parents[2]
LUA_FILES = sorted(ROOT.glob("*/commands/**/*.lua"))
REPLY_LINE = re.compile(r"^\s*(?:--)?\s*\{\s*(-?\d+)\b[^\n]*?\bERR_([A-Z][A-Z0-9_]*)")
ERR_NAME = re.compile(r"\bERR_[A-Z][A-Z0-9_]*")



def header(path: Path) -> str:
    """The comment a command or include opens with: a ``--[[ ]]`` block or ``--`` lines."""
    text = path.read_text()
    if text.startswith("--[["):
        return text.split("]]", 1)[0]
    lines = []
    for line in text.splitlines():
        if not line.startswith("--") or line.startswith("-- @include"):
            break
        lines.append(line)
    return "\n".join(lines)


def codes_named(path: Path) -> dict[str, int]:
    """ERR_<NAME> -> the number its reply line gives; AssertionError for a name mentioned
    anywhere but at the end of a reply tuple."""
    found: dict[str, int] = {}
    for line in header(path).splitlines():
        names = ERR_NAME.findall(line)
        if not names:
            continue
        match = REPLY_LINE.match(line)
        assert match and len(names) == 1, f"{path.name}: not '{{code, ...}}  ERR_NAME': {line!r}"
        name, code = match.group(2), int(match.group(1))
        assert found.get(name, code) == code, f"{path.name}: {name} given two numbers"
        found[name] = code
    return found


def _param(path: Path) -> object:
    return pytest.param(path, id=path.relative_to(ROOT).as_posix())


@pytest.mark.parametrize("path", [_param(p) for p in LUA_FILES])
def test_header_codes_are_the_error_codes(path: Path) -> None:
    for name, code in codes_named(path).items():
        assert name in ErrorCode.__members__, f"{path.name}: ERR_{name} is not an ErrorCode"
        assert code == ErrorCode[name], (f"{path.name}: ERR_{name} is {code} in the header, "
                                         f"{int(ErrorCode[name])} in ErrorCode")


def test_headers_of_the_commands_that_refuse_name_their_codes() -> None:
    """Not vacuous: the parser finds the codes the ownership commands and the broker commands
    built on them are known to return."""
    by_file = {p.relative_to(ROOT).as_posix(): codes_named(p) for p in LUA_FILES}
    assert by_file["ownership/commands/acquire-3.lua"] == {"LEASE_HELD": -1, "RUN_EXISTS": -3}
    assert by_file["ownership/commands/includes/acquireRun.lua"] == {"LEASE_HELD": -1,
                                                                     "RUN_EXISTS": -3}
    assert by_file["ownership/commands/extend-3.lua"] == {"LEASE_LOST": -2}
    assert by_file["broker/commands/start-run-4.lua"] == {"LEASE_HELD": -1, "RUN_EXISTS": -3}
    assert by_file["broker/commands/submit-4.lua"] == {"LEASE_LOST": -2,
                                                       "CALLBACK_ID_USED": -30}


@pytest.mark.parametrize("line", [
    "    ERR_LEASE_HELD: no tuple before the name",
    "    {-1, holder}   ERR_LEASE_HELD or ERR_RUN_EXISTS",
])
def test_a_name_off_its_reply_line_is_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad-1.lua"
    path.write_text(f"--[[\n  KEYS[1] x\n  Output:\n{line}\n]]\nreturn 1\n")
    with pytest.raises(AssertionError, match="not '"):
        codes_named(path)


def test_the_scripts_reply_the_numbers_the_enum_names(registry: Registry) -> None:
    """The replies themselves, not only the headers, carry ErrorCode's numbers."""
    lease = registry.acquire("codes", ttl=30)
    held = registry.prepare_acquire("codes", 30, "exclusive", None)
    assert int(registry.scripts("acquire", held.keys, held.argv)[0]) == ErrorCode.LEASE_HELD
    taken = registry.prepare_acquire("codes", 30, "supersede", lease.run_id)
    assert int(registry.scripts("acquire", taken.keys, taken.argv)[0]) == ErrorCode.RUN_EXISTS
    registry.release(lease)
    with pytest.raises(LeaseLost):
        registry.renew(lease)
    keys = [registry.keys.run("codes", lease.run_id), registry.keys.owner("codes"),
            registry.keys.metrics(shard_of("codes"))]
    reply = registry.scripts("extend", keys, [lease.fence, "live", 0, registry.retention_ms])
    assert int(reply[0]) == ErrorCode.LEASE_LOST
