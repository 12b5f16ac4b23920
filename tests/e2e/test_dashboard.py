"""The live dashboard in headless Chromium (Debian's chromium, driven through its chromedriver
by Selenium; nothing is downloaded at test time). Events published to Kafka must change the
page: per-site figures, the dispatch stack and the fleet totals. A screenshot is saved.

The worker asks for a read token, as in production: the page takes it from the URL fragment,
or asks for it, and sends it with its API and stream calls."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from schemas import CarbonEvent
from streams.engine.fleet import Fleet, load_fleet
from streams.kafka.broker import EmbeddedBroker
from streams.sdk import Publisher
from tests.e2e.harness import worker_on, worker_settings
from tests.factories import T0, Q, hashprice, price, telemetry

pytestmark = pytest.mark.e2e
READ_TOKEN = "dashb0ard-read"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Chromium on a closed network: no background connections, no first-run work, no sandbox (root).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,760",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        reason = "Debian's chromium and chromium-driver are not installed (make browser)"
        if os.environ.get("GRIDSHIFT_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def dashboard_url(broker: EmbeddedBroker, topic_prefix: str) -> AsyncIterator[str]:
    settings = worker_settings(
        topic_prefix,
        http_enabled=True,
        http_port=0,
        http_token="dashb0ard-write",
        http_read_token=READ_TOKEN,
    )
    fleet: Fleet = load_fleet(None)
    async with worker_on(broker.bootstrap, fleet, settings) as worker:
        yield f"http://127.0.0.1:{worker.http_port}/"


def carbon(k: int, intensity: float) -> CarbonEvent:
    return CarbonEvent(
        interval_start=T0 + k * Q,
        interval_end=T0 + (k + 1) * Q,
        region="ERCOT",
        average_intensity_g_per_kwh=intensity,
    )


def text(driver: webdriver.Chrome, css: str) -> str:
    value: str = driver.find_element(By.CSS_SELECTOR, css).text
    return value


async def wait_page(driver: webdriver.Chrome, condition: str, timeout_s: float = 60.0) -> None:
    """Wait (bounded) until the JavaScript expression ``condition`` is true in the page."""

    def until() -> None:
        WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(
            lambda d: d.execute_script(f"return Boolean({condition});")
        )

    await asyncio.to_thread(until)


async def test_dashboard_follows_the_decision_stream(
    browser: webdriver.Chrome,
    dashboard_url: str,
    broker: EmbeddedBroker,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    sites = [s.site_id for s in load_fleet(None).sites]
    await asyncio.to_thread(browser.get, f"{dashboard_url}#token={READ_TOKEN}")
    await wait_page(browser, "document.querySelectorAll('section.site').length === 2")
    await wait_page(browser, "document.getElementById('status').textContent === 'live'")
    assert text(browser, "#total-decided") == "0"
    # The token left the address bar (and history) and lives in this tab only.
    assert browser.execute_script("return location.href;") == dashboard_url
    assert browser.execute_script("return sessionStorage.getItem('gridshift.token');") == READ_TOKEN

    async with Publisher(broker.bootstrap, topic_prefix=topic_prefix) as publisher:
        await publisher.publish("market.hashprice.v1", hashprice())
        # A cheap evening, then a scarcity spike: mining runs, then is shed.
        for k, usd in enumerate([22.0, 25.0, 31.0, 28.0, 35.0, 40.0, 640.0]):
            for site in sites:
                await publisher.publish("site.telemetry.v1", telemetry(site, k))
            await publisher.publish("grid.carbon.v1", carbon(k, 380.0 + 12.0 * k))
            await publisher.publish("grid.price.v1", price(k, usd))
            await publisher.flush()
            cards = " && ".join(
                f"Number(document.querySelector('[data-site=\"{s}\"]').dataset.decisions) > {k}"
                for s in sites
            )
            await wait_page(browser, cards)

    assert text(browser, "#total-decided") == "2"
    for site in sites:
        card = f"[data-site='{site}']"
        assert text(browser, f"{card} .price") == "640.0"
        assert text(browser, f"{card} .carbon") == "452"
        assert text(browser, f"{card} .mining") == "0.0"  # shed in the spike
        assert float(text(browser, f"{card} .gpu")) > 0  # GPU contracts protected
        assert browser.find_elements(By.CSS_SELECTOR, f"{card} svg polygon")
    assert float(text(browser, "#total-gpu")) > 0
    assert text(browser, "#total-mining") == "0.0"

    # GRIDSHIFT_SCREENSHOT=docs/dashboard.png refreshes the README's picture.
    target = Path(os.environ.get("GRIDSHIFT_SCREENSHOT") or tmp_path / "dashboard.png")
    assert await asyncio.to_thread(browser.save_screenshot, str(target))
    size = (await asyncio.to_thread(target.stat)).st_size
    assert size > 10_000  # a real picture, not an empty page
    print(f"dashboard screenshot: {target}")

    # Without a token the page asks for one, then streams with it (the latest plans first).
    browser.execute_script("sessionStorage.clear();")
    await asyncio.to_thread(browser.get, "about:blank")
    await asyncio.to_thread(browser.get, dashboard_url)
    await wait_page(browser, "!document.getElementById('login').hidden")
    assert "bearer token" in text(browser, "#status")
    assert not browser.find_elements(By.CSS_SELECTOR, "section.site")
    browser.find_element(By.ID, "token").send_keys(READ_TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    await wait_page(browser, "document.getElementById('total-decided').textContent === '2'")
    assert text(browser, f"[data-site='{sites[0]}'] .price") == "640.0"
