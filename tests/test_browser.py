"""The operator console in a real browser (Debian's Chromium, driven by Playwright): sign in,
filter the queue to exceeded items, select them, run "Retry selected", see the message and
the new state; and a screenshot of the dashboard under test-artifacts/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncq.models import SyncQueueItem, SyncStatus
from tests.conftest import ROOT
from tests.factories import discovery_make, queue_item_exceeded, user_make

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

# Playwright's sync API runs an event loop in this thread; the ORM calls below are not
# made from coroutines, which is what Django's guard is for.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(
        f"{CHROMIUM} is absent (apt-get install chromium, as .ci/run does)",
        allow_module_level=True,
    )

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page():
    """A page of a headless Debian Chromium, closed afterwards."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


@pytest.mark.django_db(transaction=True)
def test_operator_retries_exceeded_items_in_the_browser(live_server, browser_page):
    """An operator signs in, filters to exceeded items, retries them all, and sees it done."""
    user_make("ops", superuser=True, password="a-long-test-password")
    exceeded = [
        queue_item_exceeded(
            description=f"stuck {n}", error="OperationalError: database is locked"
        ).id
        for n in range(3)
    ]
    discovery_make(description="still waiting")  # pending, must stay out of the filter
    page = browser_page

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(f"{live_server.url}/admin/syncq/syncqueueitem/")
    page.click("#changelist-filter >> text=Max retries exceeded")
    page.wait_for_url("**sync_status__exact=max_retries_exceeded**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 3
    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_selected")
    page.click("button[name=index]")

    success = page.locator("ul.messagelist li.success")
    success.wait_for()
    assert "3" in success.inner_text()
    assert set(
        SyncQueueItem.objects.filter(id__in=exceeded).values_list("sync_status", flat=True)
    ) == {SyncStatus.PENDING}

    page.goto(f"{live_server.url}/admin/syncq/syncqueueitem/?sync_status__exact=pending")
    assert page.locator("#result_list tbody tr").count() == 4

    page.goto(f"{live_server.url}/admin/dashboard/")
    assert page.locator("svg").count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
