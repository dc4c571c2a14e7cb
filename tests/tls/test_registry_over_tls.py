"""The registry suite (tests/ownership/test_registry.py) over rediss://."""

from tests.ownership.test_registry import *  # noqa: F403 - re-run every test over TLS
