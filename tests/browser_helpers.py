"""Headless Chromium for the browser tests (the service page, the run's report page)."""
import os
import tempfile

import pytest


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
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(60)
    driver.profile = profile
    return driver
