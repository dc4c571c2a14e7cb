"""The Lua loader's own rules, on small scripts in temporary folders against a real Redis:
the key count a file's name promises is enforced on every call, a header that disagrees with
the name is refused at load, and includes come only from the folders the loader was given."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from leasegate.ownership import LUA_INCLUDES, Scripts


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


ECHO = """--[[
  KEYS[1] a
  KEYS[2] b
]]
return {KEYS[1], KEYS[2], ARGV[1]}
"""

SPREAD = """--[[
  KEYS[1]     a
  KEYS[2..n]  more keys
]]
return #KEYS
"""


def test_a_call_takes_exactly_the_keys_its_name_says(redis_client: redis.Redis,
                                                     tmp_path: Path) -> None:
    write(tmp_path, "echo-2.lua", ECHO)
    scripts = Scripts(redis_client, tmp_path)
    assert scripts("echo", ["k1", "k2"], ["x"]) == [b"k1", b"k2", b"x"]
    for keys in (["k1"], ["k1", "k2", "k3"], []):
        with pytest.raises(ValueError, match=r"'echo' takes 2 keys, got " + str(len(keys))):
            scripts("echo", keys, ["x"])


def test_a_header_with_more_keys_allows_more(redis_client: redis.Redis,
                                             tmp_path: Path) -> None:
    write(tmp_path, "spread-1.lua", SPREAD)
    scripts = Scripts(redis_client, tmp_path)
    assert scripts("spread", ["a"], []) == 1
    assert scripts("spread", ["a", "b", "c"], []) == 3
    with pytest.raises(ValueError, match="'spread' takes at least 1 keys, got 0"):
        scripts("spread", [], [])


@pytest.mark.parametrize(("name", "text", "says"), [
    ("echo-3.lua", ECHO, "lists 2 keys; its name says 3"),
    ("echo-1.lua", ECHO, "lists 2 keys; its name says 1"),
    ("spread-2.lua", SPREAD, "lists 1 keys and more; its name says 2"),
    ("fixed-1.lua", "--[[\n  KEYS[1] a\n  KEYS[3..n] more\n]]\nreturn 1\n",
     "lists 1 keys and more; its name says 1"),
])
def test_a_header_that_disagrees_with_the_name_is_refused_at_load(
        redis_client: redis.Redis, tmp_path: Path, name: str, text: str, says: str) -> None:
    write(tmp_path, name, text)
    with pytest.raises(ValueError, match=f"{name}: its header {says}"):
        Scripts(redis_client, tmp_path)


def test_a_file_not_named_name_keys_is_refused(redis_client: redis.Redis,
                                               tmp_path: Path) -> None:
    write(tmp_path, "echo.lua", ECHO)
    with pytest.raises(ValueError, match=r"echo\.lua is not named <name>-<keys>\.lua"):
        Scripts(redis_client, tmp_path)


@pytest.mark.parametrize("state", ["missing", "empty", "includes only"])
def test_a_commands_folder_missing_or_empty_is_refused_by_name_at_load(
        redis_client: redis.Redis, tmp_path: Path, state: str) -> None:
    """An installation that lost its data files fails at start-up, not with a 500 later."""
    folder = tmp_path / "commands"
    if state != "missing":
        folder.mkdir()
    if state == "includes only":
        write(folder / "includes", "helper.lua", "local function helper() end\n")
    said = "is missing" if state == "missing" else "has no <name>-<keys>.lua file"
    with pytest.raises(FileNotFoundError, match=f"{folder} {said}: this leasegate installation "
                                                "is incomplete"):
        Scripts(redis_client, folder)


def test_an_unknown_command_is_named_with_the_folder(redis_client: redis.Redis,
                                                     tmp_path: Path) -> None:
    write(tmp_path, "echo-2.lua", ECHO)
    scripts = Scripts(redis_client, tmp_path)
    with pytest.raises(LookupError, match=r"no Lua command 'take' in .* \(it has \['echo'\]\)"):
        scripts("take", ["k"], [])


USES_HELPER = """--[[
  KEYS[1] a
]]
-- @include "helper"
return helper(ARGV[1])
"""
HELPER = "local function helper(x) return 'helped ' .. x end\n"


def test_an_include_is_found_only_in_the_given_folders(
        redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands, shared = tmp_path / "commands", tmp_path / "shared"
    write(commands, "use-1.lua", USES_HELPER)
    write(shared, "helper.lua", HELPER)
    # in the working directory, or in the includes/ of a folder nobody named: not searched
    write(tmp_path, "helper.lua", HELPER)
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "elsewhere" / "includes", "helper.lua", HELPER)
    with pytest.raises(FileNotFoundError, match=r"'helper' of use-1\.lua"):
        Scripts(redis_client, commands)
    with pytest.raises(FileNotFoundError, match=r"'helper' of use-1\.lua"):
        Scripts(redis_client, commands, includes=(tmp_path / "elsewhere",))
    scripts = Scripts(redis_client, commands, includes=(shared,))
    assert scripts("use", ["k"], ["x"]) == b"helped x"


def test_the_folders_own_includes_come_first(redis_client: redis.Redis,
                                             tmp_path: Path) -> None:
    commands, shared = tmp_path / "commands", tmp_path / "shared"
    write(commands, "use-1.lua", USES_HELPER)
    write(commands / "includes", "helper.lua",
          "local function helper(x) return 'own ' .. x end\n")
    write(shared, "helper.lua", HELPER)
    scripts = Scripts(redis_client, commands, includes=(shared,))
    assert scripts("use", ["k"], ["x"]) == b"own x"


def test_an_upper_layer_reaches_ownership_lua_only_by_naming_it(redis_client: redis.Redis,
                                                                tmp_path: Path) -> None:
    """A script of another folder building on acquire_run loads with LUA_INCLUDES given,
    and fails to load without."""
    write(tmp_path, "probe-1.lua", """--[[
  KEYS[1] a
]]
-- @include "now"
-- @include "runState"
-- @include "acquireRun"
return type(acquire_run)
""")
    with pytest.raises(FileNotFoundError, match=r"'now' of probe-1\.lua"):
        Scripts(redis_client, tmp_path)
    scripts = Scripts(redis_client, tmp_path, includes=(LUA_INCLUDES,))
    assert scripts("probe", ["k"], []) == b"function"


LIMITED = """--[[
  KEYS[1] a
]]
-- @constants LIMIT TTL_MS
return {LIMIT, TTL_MS, ARGV[1]}
"""


def test_constants_are_bound_once_and_never_read_unbound(redis_client: redis.Redis,
                                                         tmp_path: Path) -> None:
    write(tmp_path, "limited-1.lua", LIMITED)
    scripts = Scripts(redis_client, tmp_path)
    with pytest.raises(ValueError, match=r"'limited' needs its constants bound first"):
        scripts("limited", ["k"], ["x"])
    with pytest.raises(ValueError, match=r"missing \['TTL_MS'\], unknown \['TTL'\]"):
        scripts.bind("limited", {"LIMIT": 1, "TTL": 2})
    with pytest.raises(ValueError, match="constant TTL_MS of 'limited' must be an int"):
        scripts.bind("limited", {"LIMIT": 1, "TTL_MS": 2.5})  # type: ignore[dict-item]
    small = scripts.bind("limited", {"LIMIT": 3, "TTL_MS": 1000})
    large = scripts.bind("limited", {"TTL_MS": 9000, "LIMIT": 70})
    assert small != large and scripts.bind("limited", {"LIMIT": 3, "TTL_MS": 1000}) == small
    assert scripts(small, ["k"], ["x"]) == [3, 1000, b"x"]
    assert scripts(large, ["k"], ["y"]) == [70, 9000, b"y"]
    with pytest.raises(ValueError, match=f"'{small}' takes 1 keys, got 2"):
        scripts(small, ["k", "l"], ["x"])
