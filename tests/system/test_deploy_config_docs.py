"""The variables recipes and docs set, the code reads, and docs/configuration.md documents agree.

- every variable a recipe sets is one the code reads (LEASEGATE_* ones: a string literal in
  the package; others: read by the package or listed in THIRD_PARTY_ENV with who reads them);
- every LEASEGATE_* variable the code reads has a row in docs/configuration.md with its
  default, and the defaults of WorkerConfig and the OpenAI backend are the documented ones.
"""

from __future__ import annotations

import inspect
import re

from tests.support.deploy import (
    DOCS,
    ROOT,
    THIRD_PARTY_ENV,
    code_vars,
    doc_commands,
    package_literals,
    processes,
)


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
