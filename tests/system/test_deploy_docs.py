"""The docs pages exist and their links resolve; the ``--json`` shapes documented in
docs/operating.md are the ones the commands print, and its Python examples run.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import click

from tests.support.deploy import DEPLOY, DOC_PAGES, DOCS, rel


def test_docs_pages_exist_and_their_links_resolve() -> None:
    for page in DOC_PAGES:
        assert (DOCS / page).is_file(), f"docs/{page} is missing"
    for path in [*DOCS.glob("*.md"), *DEPLOY.rglob("*.md")]:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{rel(path)}: link to {target}"


def heading_anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_to_a_section_name_one_that_exists() -> None:
    pages = [*DOCS.glob("*.md"), *DEPLOY.rglob("*.md"), DOCS.parent / "README.md"]
    checked = 0
    for path in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", path.read_text()):
            page = path.parent / target if target else path
            if page.suffix != ".md" or not page.is_file():
                continue
            headings = re.findall(r"^#+ (.*)$", page.read_text(), re.MULTILINE)
            assert anchor in {heading_anchor(h) for h in headings}, (
                f"{rel(path)}: link to {target or path.name}#{anchor}: no such section")
            checked += 1
    assert checked > 20  # the reader found the docs' section links at all


# -- the --json shapes docs/operating.md documents -------------------------------------------

FREE_FORM = {"by_kind", "by_reason", "by_tool", "counters", "pending", "payload"}


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

    from leasegate.broker import Client
    from leasegate.workers import WorkerConfig, install
    from leasegate.workers.cli.dlq import dlq
    from leasegate.workers.cli.runs import runs

    secret = b"deploy-test-secret-0123456789"
    config = WorkerConfig(redis_url=redis_server.url, namespace=namespace, secret=secret,
                          artifact_dir=str(tmp_path / "art"))
    app = install(Celery("deploy-test", set_as_current=False), config)
    client = Client(redis_server.client(), namespace, secret=secret)
    store = config.artifact_store()
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
