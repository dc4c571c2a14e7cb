"""install(app) connects leasegate's Celery signal handlers, once per process however many apps
it installs; importing the package or its modules connects nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHECK = textwrap.dedent("""
    import weakref

    from celery import Celery
    from celery.signals import task_revoked, worker_ready

    import leasegate.workers.installation
    from leasegate.workers import WorkerConfig, install
    from leasegate.workers.signals import quarantine_revoked, serve_worker_metrics

    def ours(signal, handler):
        found = [ref() if isinstance(ref, weakref.ReferenceType) else ref
                 for _, ref in signal.receivers]
        return [receiver for receiver in found if receiver is handler]

    assert not ours(worker_ready, serve_worker_metrics), "connected on import"
    assert not ours(task_revoked, quarantine_revoked), "connected on import"
    for name in ("one", "two"):
        install(Celery(name, set_as_current=False), WorkerConfig(insecure_dev=True))
    assert len(ours(worker_ready, serve_worker_metrics)) == 1
    assert len(ours(task_revoked, quarantine_revoked)) == 1
""")


def test_install_connects_the_signal_handlers_once_and_import_does_not() -> None:
    # a fresh interpreter: this one's signals already carry other tests' installs
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
