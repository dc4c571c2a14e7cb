"""Reading deploy/ and docs/ the way the tests/system/test_deploy_*.py files check them: what
the package offers (variables it reads, celery commands, queues), every process a recipe
starts (compose, Kubernetes, systemd, the Dockerfile) with its environment, and the commands
written in the docs, each parsed and checked against the real click commands.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs"
PACKAGE_DIRS = ("ownership", "broker", "workers", "gateway", "testing")
APP = "leasegate.workers"
DOC_PAGES = ("concepts.md", "guarantees.md", "configuration.md", "operating.md", "scaling.md",
             "failure-modes.md")
# Variables a recipe may set that leasegate itself does not read, and who does.
THIRD_PARTY_ENV = {
    "PYTHONUNBUFFERED": "CPython: logs reach the container log at once",
    "PYTHONDONTWRITEBYTECODE": "CPython",
    "PIP_NO_CACHE_DIR": "pip, while the image is built",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip, while the image is built",
    "CUDA_VISIBLE_DEVICES": "the CUDA runtime: one GPU per worker process",
}
# deploy/.env is docker compose's file of local variables (the secret): never committed.
LOCAL_ONLY = {DEPLOY / ".env"}
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


# -- what the package offers -----------------------------------------------------------------

@cache
def package_literals() -> frozenset[str]:
    """Every string constant of the package's modules that looks like a variable name."""
    found = set()
    for folder in PACKAGE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and ENV_NAME.fullmatch(node.value):
                    found.add(node.value)
    return frozenset(found)


def code_vars() -> set[str]:
    return {name for name in package_literals() if name.startswith("LEASEGATE_")}


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@cache
def celery_commands() -> dict[str, click.Command]:
    """celery's own commands plus the plugins pyproject.toml declares (installed or not)."""
    from celery.bin.celery import celery

    commands = dict(celery.commands)
    for name, target in pyproject()["project"]["entry-points"]["celery.commands"].items():
        module, _, attr = target.partition(":")
        commands[name] = getattr(importlib.import_module(module), attr)
    return commands


@cache
def app_queues() -> frozenset[str]:
    from leasegate.workers.default_app import app

    return frozenset(queue.name for queue in app.conf.task_queues)


def max_deadline(env: dict[str, str]) -> float:
    from leasegate.workers.config import WorkerConfig

    return WorkerConfig.from_env(env).max_deadline


# -- reading deploy/ -------------------------------------------------------------------------

@dataclass
class Process:
    """One process a recipe starts: its command line, its environment, how long a stop waits."""

    where: str
    argv: list[str]
    env: dict[str, str]
    grace: float | None = None
    mounts: dict[str, str] = field(default_factory=dict)  # path in the process -> source


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def duration(text: str | int | float) -> float:
    """'31m', '1860', '30s', '5min' -> seconds."""
    if isinstance(text, int | float):
        return float(text)
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip()):
        total += float(number) * units[unit]
    return total


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def compose_processes() -> list[Process]:
    found = []
    for name, svc in compose()["services"].items():
        command = svc.get("command", [])
        argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        mounts = {}
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts[target] = source
        grace = duration(svc["stop_grace_period"]) if "stop_grace_period" in svc else 10.0
        found.append(Process(f"compose.yaml services.{name}", argv,
                             {k: str(v) for k, v in env.items()}, grace, mounts))
    return found


@cache
def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{rel(path)}: every document must be a mapping"
            if doc.get("kind") == "Kustomization":
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{rel(path)}: {key} defined twice"
            doc["_file"] = rel(path)
            objects[key] = doc
    return objects


def k8s_value(kind: str, name: str, key: str, where: str) -> str:
    obj = k8s_objects().get((kind, name))
    assert obj is not None, f"{where}: no {kind} {name!r} in deploy/k8s"
    data = {**obj.get("data", {}), **obj.get("stringData", {})}
    assert key in data, f"{where}: {kind} {name!r} has no key {key!r}"
    return str(data[key])


def k8s_processes() -> list[Process]:
    found = []
    for (kind, name), obj in k8s_objects().items():
        if kind != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            where = f"{obj['_file']} {name}/{container['name']}"
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                ref_kind = "ConfigMap" if "configMapRef" in source else "Secret"
                ref = source.get("configMapRef") or source["secretRef"]
                obj_ref = k8s_objects().get((ref_kind, ref["name"]))
                assert obj_ref is not None, f"{where}: envFrom names no {ref_kind} {ref['name']}"
                env.update({k: str(v) for k, v in
                            {**obj_ref.get("data", {}), **obj_ref.get("stringData", {})}.items()})
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                    continue
                ref = item["valueFrom"]
                ref_kind = "ConfigMap" if "configMapKeyRef" in ref else "Secret"
                ref = ref.get("configMapKeyRef") or ref["secretKeyRef"]
                env[item["name"]] = k8s_value(ref_kind, ref["name"], ref["key"], where)
            mounts = {}
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"])
                assert volume is not None, f"{where}: mounts unknown volume {mount['name']}"
                mounts[mount["mountPath"]] = json.dumps({k: v for k, v in volume.items()
                                                         if k != "name"}, sort_keys=True)
            argv = [*container.get("command", []), *container.get("args", [])]
            found.append(Process(where, [str(a) for a in argv], env,
                                 float(pod.get("terminationGracePeriodSeconds", 30)), mounts))
    return found


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit by hand (configparser keeps one of repeated keys): section -> pairs."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{rel(path)}:{number}: bad section line"
            current = sections.setdefault(line[1:-1], [])
            continue
        key, eq, value = line.partition("=")
        assert eq and current is not None, f"{rel(path)}:{number}: not key=value in a section"
        current.append((key.strip(), value.strip()))
    return sections


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        assert eq and ENV_NAME.fullmatch(key), f"{rel(path)}:{number}: not NAME=value"
        env[key] = value
    return env


def systemd_processes() -> list[Process]:
    found = []
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        service = dict(read_unit(path)).get("Service", [])
        env: dict[str, str] = {}
        for key, value in service:
            if key == "EnvironmentFile":
                shipped = DEPLOY / "systemd" / Path(value.lstrip("-")).name
                assert shipped.is_file(), f"{rel(path)}: EnvironmentFile {value} is not shipped"
                env.update(read_env_file(shipped))
            elif key == "Environment":
                env.update(item.split("=", 1) for item in shlex.split(value))
        starts = [value.lstrip("-@:+!") for key, value in service if key == "ExecStart"]
        assert len(starts) == 1, f"{rel(path)}: one ExecStart"
        stop = dict(service).get("TimeoutStopSec", "90")
        found.append(Process(rel(path), shlex.split(starts[0]), env, duration(stop)))
    return found


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined."""
    instructions, pending = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def docker_processes() -> list[Process]:
    env: dict[str, str] = {}
    commands = []
    for word, rest in dockerfile():
        if word == "FROM":
            env = {}
        elif word == "ENV":
            if "=" in rest.split()[0]:
                env.update(item.split("=", 1) for item in shlex.split(rest))
            else:
                key, value = rest.split(None, 1)
                env[key] = value
        elif word in ("CMD", "ENTRYPOINT"):
            commands.append(json.loads(rest) if rest.startswith("[") else shlex.split(rest))
    assert commands, "deploy/Dockerfile has no CMD"
    return [Process("deploy/Dockerfile CMD", [str(a) for a in commands[-1]], env)]


def processes() -> list[Process]:
    return [*compose_processes(), *k8s_processes(), *systemd_processes(), *docker_processes()]


# -- commands in docs and markdown -----------------------------------------------------------

SHELL_BLOCKS = ("", "sh", "bash", "shell", "console")


def markdown_lines(path: Path) -> Iterator[tuple[str, str]]:
    """(where, command line) of every shell block line and every inline `celery ...` span."""
    block: str | None = None
    pending = ""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{rel(path)}:{number}"
        fence = re.fullmatch(r"\s*```(\S*)\s*", line)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block is None:
            for span in re.findall(r"`([^`]+)`", line):
                if span.startswith(("celery ", "leasegate ")):
                    yield where, span
        elif block in SHELL_BLOCKS:
            text = line.strip().removeprefix("$ ")
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            yield where, pending + text
            pending = ""


def segments(line: str) -> Iterator[list[str]]:
    """Simple commands of a shell line: split at | && || ; and redirections."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    current: list[str] = []
    for token in lexer:
        if token and set(token) <= set("|&;<>()"):
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


@dataclass
class Command:
    where: str
    argv: list[str]


def doc_commands() -> tuple[list[Command], dict[str, str]]:
    """Commands in deploy/*.md and docs/*.md, and the variables they set (name -> where)."""
    commands, env = [], {}
    pages = [*DEPLOY.rglob("*.md"), *DOCS.glob("*.md")]
    for path in sorted(pages):
        for where, line in markdown_lines(path):
            for tokens in segments(line):
                if tokens[0] == "export":
                    tokens = tokens[1:]
                while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
                    env[tokens.pop(0).split("=", 1)[0]] = where
                if tokens:
                    commands.append(Command(where, tokens))
    return commands, env


# -- checking one command ----------------------------------------------------------------------

def options_of(command: click.Command) -> dict[str, click.Parameter]:
    table = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                table[name] = param
    return table


def parse(command: click.Command, argv: list[str], where: str,
          stop_at_positional: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """Options (by parameter name) and positionals of ``argv`` for ``command``."""
    table = options_of(command)
    options: dict[str, list[str]] = {}
    positionals: list[str] = []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token == "--help":  # click adds it to every command
            continue
        if token.startswith("-") and len(token) > 1:
            name, eq, value = token.partition("=")
            param = table.get(name)
            assert isinstance(param, click.Option), \
                f"{where}: `{command.name}` has no option {name}"
            if param.is_flag or param.count:
                assert not eq, f"{where}: {name} takes no value"
                value = ""
            elif not eq:
                assert tokens, f"{where}: {name} needs a value"
                value = tokens.pop(0)
            options.setdefault(str(param.name), []).append(value)
        else:
            positionals.append(token)
            if stop_at_positional:
                return options, positionals + tokens
    return options, positionals


def check_celery(argv: list[str], where: str) -> tuple[str, dict[str, list[str]]]:
    """Check ``celery <argv>``; return the (sub)command path and its options."""
    from celery.bin.celery import celery
    from celery.worker.control import Panel

    top, rest = parse(celery, argv, where, stop_at_positional=True)
    assert top.get("app") == [APP], f"{where}: the app must be -A {APP}, got {top.get('app')}"
    assert rest, f"{where}: no celery subcommand"
    commands = celery_commands()
    assert rest[0] in commands, f"{where}: no celery subcommand {rest[0]!r}"
    command, path, rest = commands[rest[0]], rest[0], rest[1:]
    if isinstance(command, click.Group):
        _, rest = parse(command, rest, where, stop_at_positional=True)
        assert rest and rest[0] in command.commands, \
            f"{where}: `celery {path}` has no subcommand {rest[0] if rest else '(none)'!r}"
        command, path, rest = command.commands[rest[0]], f"{path} {rest[0]}", rest[1:]
    options, positionals = parse(command, rest, where)
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    required = sum(p.nargs for p in arguments if p.required and p.nargs > 0)
    assert len(positionals) >= required, f"{where}: `celery {path}` needs {required} argument(s)"
    if path in ("control", "inspect"):
        action = positionals[0]
        assert action in Panel.meta and Panel.meta[action].type == path, \
            f"{where}: `celery {path}` has no command {action!r}"
    elif not any(p.nargs == -1 for p in arguments):
        assert len(positionals) <= sum(p.nargs for p in arguments), \
            f"{where}: `celery {path}` takes no argument {positionals[len(arguments):]}"
    if path == "worker":
        for queue in ",".join(options.get("queues", [])).split(","):
            assert not queue or queue in app_queues(), \
                f"{where}: queue {queue!r} is not one of the app's {sorted(app_queues())}"
        for pool in options.get("pool", []):
            assert pool in ("prefork", "solo", "threads"), f"{where}: pool {pool!r}"
    if path == "beat":
        from celery.utils.imports import symbol_by_name

        for scheduler in options.get("scheduler", []):
            symbol_by_name(scheduler)  # ImportError/AttributeError name a wrong scheduler
    return path, options


def check_leasegate_script(argv: list[str], where: str) -> None:
    from leasegate.gateway.cli import main  # serve, and every other command of the workers'

    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0, f"{where}: `leasegate {' '.join(argv)}` is not a command"


def check_command(argv: list[str], where: str) -> None:
    """Commands of the kinds leasegate's recipes and docs use; others are not ours to judge."""
    names = [Path(token).name for token in argv]
    if "celery" in names:
        check_celery(argv[names.index("celery") + 1:], where)
    elif argv[:1] == ["leasegate"]:
        check_leasegate_script(argv[1:], where)
    if argv[:2] == ["docker", "compose"]:
        for token in argv:
            if re.fullmatch(r"[\w-]+=\d+", token) and argv[argv.index(token) - 1] == "--scale":
                service = token.split("=")[0]
                assert service in compose()["services"], f"{where}: no compose service {service}"
    if argv[:1] == ["systemctl"]:
        for unit in argv[2:]:
            if unit.startswith("-"):
                continue
            name = re.sub(r"@[^.]*", "@", unit.removesuffix(".service")) + ".service"
            assert (DEPLOY / "systemd" / name).is_file(), f"{where}: no unit {name} in deploy/"
    for token in argv:
        if token.startswith("deploy/"):
            assert list(ROOT.glob(token)), f"{where}: {token} does not exist"
