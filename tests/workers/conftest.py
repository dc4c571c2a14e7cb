"""Fixtures the worker suites share beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.rabbitmq import RabbitVhost, require_rabbitmq


@pytest.fixture(scope="module")
def vhost() -> Iterator[RabbitVhost]:
    """A RabbitMQ vhost of the module's own, created and deleted around it."""
    require_rabbitmq()
    with RabbitVhost() as made:
        yield made
