"""The gate suite (tests/broker/test_gate.py) over rediss://."""

from tests.broker.test_gate import *  # noqa: F403 - re-run every test over TLS
