"""Notifications in a real browser: alice has the notification centre open; an event for her
(a security notification, then an order fill notification made by the services) appears at the
top without a reload, and the bell's unread count in the top bar follows, then drops to zero
when she marks all read.

Headless Debian chromium through Playwright against uvicorn and the embedded worker in this
process (tests/common/live_stack.py). Database work while the browser runs happens in helper
threads (Playwright's sync API makes this thread count as inside an event loop).
"""

from collections.abc import Iterator
from typing import Any

import pytest

from apps.notifications.models import Event
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_chart import in_thread
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in

pytestmark = [pytest.mark.browser, transactional_db()]

STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def platform(django_db_setup: Any) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as monkeypatch, live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def page(alice: Any, enable_2fa: Any, password: str, platform: LiveServer) -> Iterator[Any]:
    """Alice signed in; started after every database fixture."""
    from playwright.sync_api import sync_playwright

    device = enable_2fa(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            tab = context.new_page()
            sign_in(tab, alice.email, password)
            pass_second_factor(tab, device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def test_a_notification_arrives_live_and_the_unread_count_follows(page: Any, alice: Any) -> None:
    from playwright.sync_api import expect

    from apps.notifications.services import notify
    from apps.notifications.services.notify import notification_mark_all_read

    page.goto("/notifications/")
    page.get_by_role("button", name="Mark all read").click()  # the sign-in's own security notices
    expect(page.locator("#bell-count")).to_be_hidden()
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")

    def fill_notice() -> None:
        notify(user_id=alice.pk, event=Event.ORDER_FILLED, title="BUY 0.5 BTC/USDT @ 42000 filled", body="Demo paper")

    in_thread(fill_notice)

    first = page.locator("#notifications li.notification").first
    expect(first).to_contain_text("BUY 0.5 BTC/USDT @ 42000 filled", timeout=LIVE_TIMEOUT_MS)
    expect(first).to_have_class("notification unread")
    expect(page.locator("#bell-count")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#centre-unread")).to_have_text("1 unread")

    in_thread(lambda: notify(user_id=alice.pk, event=Event.SECURITY, title="New sign-in to your account", body=""))
    expect(page.locator("#bell-count")).to_have_text("2", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#notifications li.notification").first).to_contain_text("New sign-in")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened

    in_thread(lambda: notification_mark_all_read(user=alice))
    expect(page.locator("#bell-count")).to_be_hidden(timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#centre-unread")).to_have_text("0 unread")
