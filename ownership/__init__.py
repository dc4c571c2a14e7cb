"""leasegate.ownership: runs, leases and fencing tokens on Redis. Knows nothing of Celery.

This is the layer's whole public face: the layers above import from here, never from a
submodule. The redis-server launchers of tests, drills and the demo are not production code:
they live in ``leasegate.testing``, which no layer below the gateway imports.
"""

from .acquisition import Acquisition
from .async_connection import connect_async
from .codes import ErrorCode
from .connection import (
    as_text,
    connect,
    glob_escape,
    is_cluster,
    one_node_info,
    server_time_ms,
    unavailable_as_error,
    wait_slice,
)
from .durability import Durability, NotDurable, confirm
from .errors import LeaseHeld, LeaseLost, OwnershipError, RegistryUnavailable
from .holding import HeldLease
from .keys import SHARDS, Keys, check_run_id, check_session_key, shard_of
from .lease import Lease, RunState, RunStatus
from .registry import Outcome, Policy, Registry, status_from_reply
from .scripts import LUA_INCLUDES, Scripts
from .seconds import check_seconds, to_ms
from .sentinel import SENTINEL_SCHEME, parse_sentinel_url
from .tls import broker_use_ssl, is_tls, redis_tls_options

__all__ = [
    # runs and leases
    "Acquisition",
    "HeldLease",
    "Lease",
    "Outcome",
    "Policy",
    "Registry",
    "RunState",
    "RunStatus",
    "status_from_reply",
    # errors
    "ErrorCode",
    "LeaseHeld",
    "LeaseLost",
    "OwnershipError",
    "RegistryUnavailable",
    "NotDurable",
    # durable writes (LEASEGATE_MIN_REPLICAS)
    "Durability",
    "confirm",
    # keys and names
    "Keys",
    "SHARDS",
    "shard_of",
    "check_run_id",
    "check_session_key",
    # checks the layers above share
    "check_seconds",
    "to_ms",
    # Redis plumbing the layers above share
    "LUA_INCLUDES",
    "Scripts",
    "as_text",
    "connect",
    "connect_async",
    "glob_escape",
    "is_cluster",
    "one_node_info",
    "server_time_ms",
    "unavailable_as_error",
    "wait_slice",
    # redis+sentinel:// URLs
    "SENTINEL_SCHEME",
    "parse_sentinel_url",
    # TLS (rediss://, LEASEGATE_REDIS_TLS_*)
    "broker_use_ssl",
    "is_tls",
    "redis_tls_options",
]
