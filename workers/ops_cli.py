"""``celery -A APP leasegate metrics --port N``: the Prometheus exporter."""

from __future__ import annotations

import threading

import click
from celery.bin.base import CeleryCommand

from .cli_common import client_for


@click.group(name="leasegate")
def leasegate() -> None:
    """leasegate operations."""


@leasegate.command(cls=CeleryCommand)
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535))
@click.option("--addr", default="0.0.0.0", show_default=True)
@click.option("--interval", default=15.0, show_default=True, type=click.FloatRange(0),
              help="seconds a scrape's Redis figures are reused (counting leases scans runs)")
@click.option("--once", is_flag=True, help="print the metrics once and exit")
@click.pass_context
def metrics(ctx: click.Context, port: int, addr: str, interval: float, once: bool) -> None:
    """Serve deployment-wide metrics from Redis (and this host's workers' histograms when
    PROMETHEUS_MULTIPROC_DIR is set)."""
    from prometheus_client import generate_latest

    from .metrics import exporter_registry, serve

    registry = exporter_registry(client_for(ctx), interval)
    if once:
        click.echo(generate_latest(registry).decode(), nl=False)
        return
    serve(registry, port, addr)
    click.echo(f"leasegate metrics on http://{addr}:{port}/metrics", err=True)
    threading.Event().wait()  # serve until stopped
