"""A runtime callable for cron tests: what an agent runtime does with a fresh run."""

from __future__ import annotations

from leasegate.broker import Run


def draw_header(run: Run) -> None:
    run.submit("image_generate", prompt=f"header for run {run.fence}", size="256x256")
