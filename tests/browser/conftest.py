"""A real Chromium driving the admin against pytest-django's live server (a real HTTP server on
loopback, static files included, over the test database).

Debian's chromium and chromium-driver are what these tests use (`make test` installs them where
it runs as root with apt-get); where either is missing or will not start, the tests skip and say
why.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "`make test` installs Debian's chromium and chromium-driver when run as root"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery staple"


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium (tests/browser)")


def pytest_collection_modifyitems(config, items) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


def missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing; {INSTALL_HINT}"
    return None


@contextmanager
def headless_chromium(*arguments: str, capabilities: dict | None = None):
    """A headless Chromium through Selenium 4, quit when the block ends; skips the test where
    none can be started."""
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # /dev/shm is small in containers; Chromium crashes tabs there under load.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     *arguments):  # fmt: skip
        options.add_argument(argument)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    # Chromium leaves its process-singleton directory (a socket and a cookie) in TMPDIR when it
    # quits; one of the test's own, removed afterwards, keeps /tmp clean.
    with tempfile.TemporaryDirectory(prefix="mailscore-chromium-") as scratch:
        service = Service(str(CHROMEDRIVER), env={**os.environ, "TMPDIR": scratch})
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as exc:
            # Selenium appends a link to its troubleshooting pages; the reason comes first.
            reason = (exc.msg or type(exc).__name__).split("; For documentation")[0]
            pytest.skip(f"Chromium did not start through {CHROMEDRIVER}: {reason}")
        try:
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def browser():
    """A headless Chromium for the admin's pages; skips the test where none can be started."""
    with headless_chromium("--window-size=1400,1000") as driver:
        driver.implicitly_wait(0)
        yield driver


@pytest.fixture
def reviewer(django_user_model):
    return django_user_model.objects.create_superuser(
        "reviewer", "reviewer@mailscore.test", PASSWORD
    )


@pytest.fixture
def logged_in(browser, live_server, reviewer):
    """The browser with the reviewer signed in through the admin's own login form."""
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(reviewer.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    wait_for(browser, lambda b: b.find_elements(By.ID, "user-tools"), "the admin after login")
    # The admin's app list beside every page, closed: the pages' own content gets the width.
    browser.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    return browser


def wait_for(browser, condition, what: str, seconds: float = 30):
    """Wait until the page shows something; the failure names what never appeared."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds).until(condition, f"never saw {what}")


def screenshot(browser, name: str) -> None:
    """Screenshots for the docs, only where asked for, so that test runs leave docs/ alone."""
    if os.environ.get("MAILSCORE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / name))
