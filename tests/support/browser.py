"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium, logged in to a ``leasegate serve`` console.

Missing Chromium is a failure naming the install step, never a skip: the console's browser
tests are part of ``make test``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .gateway import TOKENS
from .helpers import wait_for_value

T = TypeVar("T")
INSTALL = "apt-get install -y chromium chromium-driver"


def find(name: str, env: str, *fallbacks: str) -> str:
    for candidate in (os.environ.get(env), shutil.which(name), *fallbacks):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise AssertionError(f"{name} is not installed: the console's browser tests need "
                         f"Debian's Chromium: run `make browser` ({INSTALL}), or set {env}")


def chromium(width: int = 1400, height: int = 900) -> WebDriver:
    """A headless Chromium of the machine's own (no download: this runs offline)."""
    options = webdriver.ChromeOptions()
    options.binary_location = find("chromium", "LEASEGATE_CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--hide-scrollbars",
                 "--force-device-scale-factor=1"):
        options.add_argument(flag)
    service = Service(find("chromedriver", "LEASEGATE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def wait_for(condition: Callable[[], T | None], timeout: float = 20.0,
             message: str = "the page") -> T:
    """Poll ``condition`` (a DOM question: no event to block on from here) until it answers;
    fail after ``timeout``."""
    return wait_for_value(condition, timeout, 0.05, message)


def log_in(driver: WebDriver, base_url: str, role: str = "operator") -> None:
    driver.get(f"{base_url}/login")
    driver.find_element(By.ID, "token").send_keys(TOKENS[role])
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(lambda: driver.current_url.endswith("/dead-letters"), message="the login")


def images_loaded(driver: WebDriver, selector: str) -> list[int]:
    """naturalWidth of every image ``selector`` matches, once each has finished loading."""
    script = ("return Array.from(document.querySelectorAll(arguments[0]))"
              ".map(i => i.complete ? i.naturalWidth : -1)")

    def widths() -> list[int] | None:
        found: Any = driver.execute_script(script, selector)
        return found if found and all(w >= 0 for w in found) else None

    return wait_for(widths, message=f"images {selector} to load")
