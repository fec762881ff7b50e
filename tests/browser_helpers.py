"""Headless Chromium for the browser tests (the service page, the run's report pages): the driver,
the URLs the page requested (Chrome DevTools' Network events) and full-page screenshots, kept under
$VITJAX_TEST_ARTIFACTS (default: <tmp>/vitjax-test-artifacts)."""
import json
import os
import tempfile
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("VITJAX_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "vitjax-test-artifacts"))


def browser():
    """Headless Chromium under selenium, or a skip (a failure under CI) naming what is missing."""
    missing = [path for path in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not os.path.exists(path)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = (f"the browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver; "
                   f"pip install -e '.[test]'")
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"CI must run the browser test: {message}")
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="vitjax-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--window-size=1200,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # DevTools events: `requested`
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(60)
    driver.profile = profile
    return driver


def requested(driver) -> list[tuple[str, str]]:
    """(URL, the URL of the document that asked) of every request the browser sent since the last
    call, from Chrome DevTools' `Network.requestWillBeSent` events: a page's images, stylesheets,
    scripts, anything a script fetched (Chromium's own chrome:// pages, such as the new-tab page it
    opens at start, ask too)."""
    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            sent.append((message["params"]["request"]["url"], message["params"].get("documentURL", "")))
    return sent


def full_screenshot(driver, name: str) -> Path:
    """A screenshot of the whole page (the window stretched to its height) as ARTIFACTS/name."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1200, 900)  # the page's height, not a window stretched for an earlier one
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(max(height, 900), 12000))
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
