"""The dashboard in a real browser: sign in with the second factor, the live socket connects,
and a security event from another tab appears without a reload.

Headless Debian chromium through Playwright's sync API (which cannot run inside an asyncio
loop, so this test is sync), against uvicorn and the embedded worker in this process.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.conftest import totp_now

pytestmark = [pytest.mark.browser, transactional_db()]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = "/tmp/e2e-dashboard.png"
# Functional waits (a step that never happens fails here), not performance budgets.
STEP_TIMEOUT_MS = 10_000
LIVE_EVENT_TIMEOUT_MS = 5_000


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def browser(alice_device: Any, platform: LiveServer) -> Iterator[Any]:
    """Started after every database fixture: while Playwright's sync API is active this thread
    counts as inside an event loop, where Django refuses database queries."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Any, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/2fa/verify/**")


def pass_second_factor(page: Any, device: Any, base_url: str, *, offset_steps: int = 0) -> None:
    page.fill("input[name=code]", totp_now(device, offset_steps=offset_steps))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{base_url}/")


def open_live_dashboard(browser: Any, server: LiveServer, user: Any, device: Any, password: str) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    context = browser.new_context(base_url=server.url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    dashboard = context.new_page()
    sign_in(dashboard, user.email, password)
    pass_second_factor(dashboard, device, server.url)
    expect(dashboard.locator("h1")).to_have_text("Dashboard")
    expect(dashboard.locator("#live-status")).to_have_text("live")
    dashboard.evaluate("window.__sameDocument = true")
    return context, dashboard


def test_dashboard_shows_new_security_event_live(
    alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    # given: alice signed in with password and authenticator code, on her dashboard
    context, dashboard = open_live_dashboard(browser, platform, alice, alice_device, password)
    assert dashboard.locator("#security-events tr", has_text="token.created").count() == 0

    # when: in a second tab she creates an API token
    tokens = context.new_page()
    tokens.goto("/tokens/")
    tokens.fill("input[name=name]", "my trading bot")
    tokens.get_by_role("button", name="Create token").click()
    expect(tokens.locator("#new-token-value")).to_be_visible()

    # then: the first tab shows it, without a reload, still live
    new_row = dashboard.locator("#security-events tr", has_text="token.created")
    expect(new_row).to_have_count(1, timeout=LIVE_EVENT_TIMEOUT_MS)
    expect(new_row).to_contain_text(alice.email)
    assert dashboard.evaluate("window.__sameDocument") is True
    expect(dashboard.locator("#live-status")).to_have_text("live")
    dashboard.screenshot(path=SCREENSHOT, full_page=True)
    context.close()


def test_dashboard_socket_refused_for_session_owing_second_factor(
    alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    # A session that has not passed the second factor never reaches the dashboard, and a
    # socket it opens itself is closed with 4403 (the page shows "signed out", no retry loop).
    context = browser.new_context(base_url=platform.url)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, alice.email, password)

    code = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}/ws/`);
            ws.onmessage = (m) => resolve("message:" + m.data);
            ws.onclose = (e) => resolve(e.code);
        })"""
    )

    assert code == 4403
    context.close()


def test_dashboard_shows_sign_in_from_another_browser_live(
    alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    context, dashboard = open_live_dashboard(browser, platform, alice, alice_device, password)
    logins_before = dashboard.locator("#security-events tr", has_text="user.login_2fa").count()

    # when: someone signs in as alice elsewhere (a separate browser profile) and passes 2FA
    elsewhere = browser.new_context(base_url=platform.url)
    elsewhere.set_default_timeout(STEP_TIMEOUT_MS)
    other = elsewhere.new_page()
    sign_in(other, alice.email, password)
    # A code is accepted once: the dashboard's sign-in used this step's, take the next one's.
    pass_second_factor(other, alice_device, platform.url, offset_steps=1)

    # then
    rows = dashboard.locator("#security-events tr", has_text="user.login_2fa")
    expect(rows).to_have_count(logins_before + 1, timeout=LIVE_EVENT_TIMEOUT_MS)
    assert dashboard.evaluate("window.__sameDocument") is True
    elsewhere.close()
    context.close()
