"""``celery -A APP leasegate metrics --port N``: the Prometheus exporter."""

from __future__ import annotations

import threading

import click
from celery.bin.base import CeleryCommand

from .common import Group, about, client_for, fail, parse_duration, source
from .doctor import doctor
from .letters import ArtifactAccess


@click.group(name="leasegate", cls=Group)
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

    from ..metrics import serve
    from .exporter import exporter_registry

    registry = exporter_registry(client_for(ctx), interval)
    if once:
        click.echo(f"# {source(ctx)}")  # a comment line: still the exposition format
        click.echo(generate_latest(registry).decode(), nl=False)
        return
    serve(registry, port, addr)
    click.echo(f"leasegate metrics on http://{addr}:{port}/metrics ({source(ctx)})", err=True)
    threading.Event().wait()  # serve until stopped


@leasegate.command(name="collect-artifacts", cls=CeleryCommand)
@click.option("--grace", default="1h", show_default=True,
              help="keep unreferenced artifacts younger than this (stored, not yet delivered)")
@click.option("--dry-run", is_flag=True)
@click.pass_context
def collect_artifacts(ctx: click.Context, grace: str, dry_run: bool) -> None:
    """Remove stored images that no inbox or dead letter references any more."""
    from ...broker import collect_artifacts as collect
    from ...broker import referenced_digests

    seconds = parse_duration(grace, "--grace")
    client = client_for(ctx)
    access = ArtifactAccess(ctx)
    if access.store is None:  # never a fresh, empty store here: there is nothing to collect
        fail(access.note)
        return
    store = access.store
    if dry_run:
        about(ctx)
        referenced = referenced_digests(client.redis, client.keys)
        unreferenced = [d for d in store.digests() if d not in referenced]
        click.echo(f"{len(unreferenced)} unreferenced artifact(s) (younger ones are kept)")
        return
    removed = collect(client.redis, client.keys, store, seconds)
    about(ctx)
    click.echo(f"removed {len(removed)} unreferenced artifact(s)")


leasegate.add_command(doctor)
