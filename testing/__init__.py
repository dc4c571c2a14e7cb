"""leasegate.testing: a pytest plugin for integrators' own owned tasks (docs/testing.md).

The fixtures live in ``leasegate.testing.plugin`` (loaded by pytest through the ``pytest11``
entry point); the helpers they return are importable here for type hints.
"""

from .control import LeaseControl, LeaseNotHeld
from .deployment import Deployment
from .verdicts import Placement, Verdicts

__all__ = ["Deployment", "LeaseControl", "LeaseNotHeld", "Placement", "Verdicts"]
