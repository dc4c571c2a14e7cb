"""leasegate.ownership: runs, leases and fencing tokens on Redis. Knows nothing of Celery."""

from .errors import LeaseHeld, LeaseLost, OwnershipError, RegistryUnavailable
from .keys import Keys
from .lease import HeldLease, Lease, RunState, RunStatus
from .registry import Registry

__all__ = [
    "HeldLease",
    "Keys",
    "Lease",
    "LeaseHeld",
    "LeaseLost",
    "OwnershipError",
    "Registry",
    "RegistryUnavailable",
    "RunState",
    "RunStatus",
]
