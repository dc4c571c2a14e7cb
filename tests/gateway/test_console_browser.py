"""The console in a real headless Chromium against a real ``leasegate serve``: log in, see the
thumbnails render, filter, replay one letter and watch it leave the list, run a bulk redrive
to completion with its progress bar, cancel one, and screenshot the pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.support.browser import chromium, images_loaded, log_in, wait_for
from tests.support.console import Letters, session_key
from tests.support.gateway import GatewayProcess


@pytest.fixture(scope="module")
def browser(gateway_server: GatewayProcess) -> Iterator[WebDriver]:
    driver = chromium()
    try:
        log_in(driver, gateway_server.url)
        yield driver
    finally:
        driver.quit()


def rows(driver: WebDriver) -> list[str]:
    """The letter ids of the list's rows (one script: no element goes stale mid-read)."""
    found: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#letters tbody tr'))"
        ".map(r => r.dataset.letter)")
    return found


def open_list(driver: WebDriver, url: str, key: str) -> None:
    driver.get(f"{url}/dead-letters?session={key}")
    wait_for(lambda: driver.find_elements(By.ID, "filters"), message="the list")


def test_thumbnails_render_in_the_list(browser: WebDriver, gateway_server: GatewayProcess,
                                       letters: Letters) -> None:
    key = session_key()
    ids, _ = letters.orphans(key, 3)
    open_list(browser, gateway_server.url, key)
    assert sorted(rows(browser)) == sorted(ids)
    widths = images_loaded(browser, "#letters td.thumb img")
    assert len(widths) == 3 and all(w > 0 for w in widths)


def test_filtering_by_kind_in_the_form(browser: WebDriver, gateway_server: GatewayProcess,
                                       letters: Letters) -> None:
    key = session_key()
    results, _ = letters.orphans(key, 2)
    errors, _ = letters.orphans(key, 2, kind="error")
    open_list(browser, gateway_server.url, key)
    assert sorted(rows(browser)) == sorted(results + errors)
    Select(browser.find_element(By.NAME, "kind")).select_by_visible_text("error")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(lambda: "kind=error" in browser.current_url
             and sorted(rows(browser)) == sorted(errors), message="the filtered list")


def test_replay_one_letter_and_watch_it_leave_the_list(
        browser: WebDriver, gateway_server: GatewayProcess, letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 3)
    open_list(browser, gateway_server.url, key)
    target = ids[1]
    browser.find_element(
        By.CSS_SELECTOR, f'tr[data-letter="{target}"] button.replay').click()
    notice = wait_for(lambda: browser.find_elements(By.ID, "notice"), message="the notice")
    assert f"replayed {target}" in notice[0].text
    assert sorted(rows(browser)) == sorted([ids[0], ids[2]])
    assert letters.recovered(live) == [target]


def test_a_bulk_redrive_runs_to_completion(browser: WebDriver,
                                           gateway_server: GatewayProcess,
                                           letters: Letters) -> None:
    key = session_key()
    ids, live = letters.orphans(key, 25, images=False)
    browser.get(f"{gateway_server.url}/redrive")
    browser.find_element(By.NAME, "session").send_keys(key)
    browser.find_element(By.ID, "count").click()
    counted = wait_for(lambda: browser.find_elements(By.ID, "dry-run"), message="the count")
    assert counted[0].text.startswith("25 letters would be replayed")
    rate = browser.find_element(By.NAME, "rate")
    rate.clear()
    rate.send_keys("50")
    browser.find_element(By.ID, "start").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "progress#bar"),
             message="the progress page")
    wait_for(lambda: browser.find_element(By.ID, "state").text == "done", timeout=30,
             message="the redrive to finish")
    bar = browser.find_element(By.ID, "bar")
    assert bar.get_attribute("value") == bar.get_attribute("max") == "25"
    assert browser.find_element(By.ID, "replayed").text == "25"
    assert sorted(letters.recovered(live)) == sorted(ids)
    open_list(browser, gateway_server.url, key)
    assert rows(browser) == []


def test_cancel_stops_a_slow_redrive(browser: WebDriver, gateway_server: GatewayProcess,
                                     letters: Letters) -> None:
    key = session_key()
    letters.orphans(key, 30, images=False)
    browser.get(f"{gateway_server.url}/redrive")
    browser.find_element(By.NAME, "session").send_keys(key)
    browser.find_element(By.NAME, "rate").send_keys("3")
    browser.find_element(By.ID, "start").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "progress#bar"),
             message="the progress page")
    wait_for(lambda: int(browser.find_element(By.ID, "done").text or 0) >= 1, timeout=20,
             message="the first letters")
    browser.find_element(By.ID, "cancel").click()
    wait_for(lambda: browser.find_element(By.ID, "state").text == "cancelled", timeout=20,
             message="the cancel")
    assert int(browser.find_element(By.ID, "done").text) < 30


def test_screenshots_of_the_list_and_a_letter(browser: WebDriver,
                                              gateway_server: GatewayProcess,
                                              letters: Letters, tmp_path: Path) -> None:
    key = session_key("cron:daily-digest")
    ids, _ = letters.orphans(key, 3)
    open_list(browser, gateway_server.url, key)
    images_loaded(browser, "#letters td.thumb img")
    listing = tmp_path / "console-list.png"
    assert browser.save_screenshot(str(listing))
    browser.get(f"{gateway_server.url}/dead-letters/{ids[0]}")
    assert images_loaded(browser, "img.full")[0] == 256
    letter = tmp_path / "console-letter.png"
    assert browser.save_screenshot(str(letter))
    for shot in (listing, letter):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
