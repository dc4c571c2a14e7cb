"""The systemd units run as a user, restart, and stop a worker gently (warm shutdown)."""

from __future__ import annotations

from tests.support.deploy import DEPLOY, read_unit, rel


def test_systemd_units_stop_workers_gently() -> None:
    for path in sorted((DEPLOY / "systemd").glob("*.service")):
        service = dict(read_unit(path)["Service"])
        assert service.get("User") not in (None, "root"), f"{rel(path)}: run as a user"
        assert service.get("Restart"), rel(path)
        assert dict(read_unit(path)["Install"]).get("WantedBy"), rel(path)
        if " worker " in service["ExecStart"]:
            # SIGTERM to the main process only: Celery's warm shutdown
            assert service.get("KillMode") == "mixed", rel(path)
