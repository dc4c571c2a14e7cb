"""deploy/ and docs/ are read, and the commands in them exist (no Docker, no Kubernetes: parsed).

- every file in deploy/ is parsed by a reader that knows its kind (an unknown kind fails);
- every ``celery`` command in deploy/ and docs/ names the app ``leasegate.workers`` and a
  subcommand, sub-subcommand, options and queues that exist.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from tests.support.deploy import (
    DEPLOY,
    LOCAL_ONLY,
    ROOT,
    celery_commands,
    check_celery,
    check_command,
    compose_processes,
    doc_commands,
    dockerfile,
    k8s_objects,
    markdown_lines,
    processes,
    pyproject,
    read_env_file,
    read_unit,
    rel,
)
from tests.system.test_deploy_ha import overlay_objects


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p not in LOCAL_ONLY
                  and "__pycache__" not in p.parts)


def users_acl(path: Path) -> None:
    from leasegate.workers.acl import acl_file

    assert path.read_text() == acl_file("lg", ["celery", "media"]), \
        f"{rel(path)}: regenerate with python -m leasegate.workers.acl --namespace lg"


def test_every_deploy_file_is_read() -> None:
    readers = {
        "Dockerfile": lambda p: dockerfile(),
        "redis.conf": lambda p: [line.split() for line in p.read_text().splitlines()],
        "compose.yaml": lambda p: compose_processes(),
        # read and checked against the workers' start-up check in test_deploy_rabbitmq.py
        "rabbitmq.compose.yaml": lambda p: yaml.safe_load(p.read_text())["services"],
        "rabbitmq.conf": lambda p: [line.split("=") for line in p.read_text().splitlines()],
        # read and checked against each other and the start-up check in test_deploy_ha.py
        "sentinel.compose.yaml": lambda p: yaml.safe_load(p.read_text())["services"],
        # the generator's output; loaded into a real Redis by tests/workers/test_acl.py
        "users.acl": lambda p: users_acl(p),
    }
    for path in deploy_files():
        if path.name in readers:
            readers[path.name](path)
        elif path.suffix == ".yaml" and path.parent.name == "k8s":
            k8s_objects()
        elif path.suffix == ".yaml" and path.parent.name == "k8s-ha":
            overlay_objects()
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
            pytest.fail(f"{rel(path)}: no reader for this kind of file in "
                        f"{rel(Path(__file__))}")


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
