"""The content security policy in a real browser (Debian's Chromium, driven by Playwright, as in
``tests/test_browser.py``): the admin, the queue dashboard and the API docs load and work
under it, with no violation reported."""

from __future__ import annotations

import pytest

from tests.factories import discovery_make, queue_item_exceeded, user_make
from tests.test_browser import browser_page  # noqa: F401 - the fixture, and its skip

#: Records every violation the page reports, before any of its own scripts run.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""

PAGES = [
    "/admin/",
    "/admin/dashboard/",
    "/admin/syncq/syncqueueitem/",
    "/admin/discoveries/discovery/",
    "/admin/axes/accessattempt/",
    "/api/docs/",
]


@pytest.mark.django_db(transaction=True)
def test_admin_dashboard_and_api_docs_work_under_the_policy(live_server, browser_page):  # noqa: F811
    """Signed in through the login form, the admin pages, the dashboard and Swagger UI load
    with no CSP violation, in the console or as an event, and Swagger UI renders the API."""
    user_make("ops", superuser=True, password="a-long-test-password")
    queue_item_exceeded(description="stuck", error="OperationalError: database is locked")
    discovery_make(description="waiting")
    page = browser_page
    page.add_init_script(RECORD_VIOLATIONS)
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    for path in PAGES:
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("load")
        assert page.evaluate("window.__cspViolations") == [], path

    # The last page, /api/docs/: Swagger UI ran its start script and drew the API.
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Keeper Sync: Control Room API" in page.locator(".swagger-ui .info").inner_text()
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() >= 5
    assert page.evaluate("window.__cspViolations") == []
    blocked = [line for line in console if "Content Security Policy" in line]
    assert not blocked, blocked
