"""How ``celery dlq drain`` exports letters: DIR/manifest.jsonl (one JSON line per letter) and
DIR/images/, resumable after a crash. Apart from dlq.py, whose commands only read and decide;
loaded by the drain command alone."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import who

if TYPE_CHECKING:
    from ...broker import Client, DeadLetter


def drain_to(client: Client, to_dir: Path,
             record_of: Callable[[DeadLetter, float], dict[str, Any]], reason: str | None,
             kind: str | None, todo: int) -> tuple[int, list[str]]:
    """Export every quarantined letter (``record_of``: its JSON form) and its images to
    ``to_dir``, archiving each once written; the number drained, and the ids of the letters
    kept quarantined because an image of theirs could not be exported."""
    from ...broker import KeepQuarantined

    kept: list[str] = []
    images = to_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    manifest = to_dir / "manifest.jsonl"
    done = _manifest_ids(manifest)
    now = client.server_time_ms() / 1000
    with manifest.open("ab", buffering=0) as out, click.progressbar(
            length=todo, label="draining", file=None) as bar:

        def export(letter: DeadLetter) -> None:
            record = record_of(letter, now)
            bar.update(1)
            if any(not ref["path"] for ref in record["artifacts"]):
                kept.append(letter.id)  # archived without its image, the image is lost
                raise KeepQuarantined(letter.id)
            for ref in record["artifacts"]:
                target = images / f"{ref['digest']}{_suffix(ref['media_type'])}"
                shutil.copyfile(ref["path"], target)
                ref["exported"] = str(target.relative_to(to_dir))
            if letter.id not in done:  # a crash between export and ack repeats the letter
                # one unbuffered write per line: a crash leaves whole lines, or one cut short
                # at the end, which the next run trims
                out.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
                done.add(letter.id)

        # one consumer name per host: a re-run after a crash resumes its own pending letters
        count = client.dead_letters.drain(export, reason=reason, kind=kind, by=who(),
                                          consumer=f"cli@{socket.gethostname()}")
    return count, kept


def _manifest_ids(manifest: Path) -> set[str]:
    """Ids already exported; a last line cut short by a crash is trimmed (its letter was not
    acknowledged, so this run exports it again)."""
    if not manifest.exists():
        return set()
    data = manifest.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with manifest.open("r+b") as f:
            f.truncate(len(data))
    return {json.loads(line)["id"] for line in data.decode().splitlines() if line.strip()}


def _suffix(media_type: str) -> str:
    return {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(
        media_type, ".bin")
