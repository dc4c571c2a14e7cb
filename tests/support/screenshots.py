"""The README's console screenshots, made again: ``python -m tests.support.screenshots``.

A redis-server, a real ``leasegate serve``, dead letters the real gate quarantined (with real
procedural images), and headless Chromium writing docs/images/console-list.png and
docs/images/console-letter.png."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

from selenium.webdriver.common.by import By

from leasegate.testing.redis_server import RedisServer

from .browser import chromium, images_loaded, log_in, wait_for
from .console import Letters
from .gateway import GatewayProcess

DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"


def populate(letters: Letters) -> str:
    """A morning's dead letters: images whose runs were superseded, a cancelled notice, a
    result for a released run, one undecodable message. Returns a letter with an image."""
    letters.orphans("cron:daily-digest", 3)
    letters.orphans("agent:marketing-banner", 2, kind="error")
    banner, _ = letters.orphans("agent:marketing-banner", 2)
    run = letters.client.start_run("cron:weekly-report", prompt="chart", ttl=60)
    env = run.envelope("image_generate", {"prompt": "weekly chart"})
    run.release("completed")
    letters.client.gate.deliver(env, result={"tool": "image_generate",
                                             "prompt": "weekly chart"},
                                artifacts=[letters.image("weekly chart", seed=3)])
    letters.malformed()
    letters.orphans("cron:daily-digest", 1)
    return banner[0]


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, RedisServer() as redis_server:
        namespace = f"shots{uuid.uuid4().hex[:6]}"
        with GatewayProcess(redis_server.url, namespace, Path(work)) as server:
            letters = Letters(server, namespace)
            try:
                letter_id = populate(letters)
            finally:
                letters.close()
            driver = chromium(1280, 760)
            try:
                log_in(driver, server.url)
                driver.get(f"{server.url}/dead-letters")
                images_loaded(driver, "#letters td.thumb img")
                listing = out / "console-list.png"
                driver.save_screenshot(str(listing))
                driver.set_window_size(1280, 1450)
                driver.get(f"{server.url}/dead-letters/{letter_id}")
                wait_for(lambda: driver.find_elements(By.ID, "history"), message="the letter")
                images_loaded(driver, "img.full")
                letter = out / "console-letter.png"
                driver.save_screenshot(str(letter))
            finally:
                driver.quit()
    return [listing, letter]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DOCS)
    for path in shoot(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
