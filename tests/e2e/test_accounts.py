"""Trading accounts in a real browser: a signed-in user connects a paper account from the form
with starting balances, finds it listed, sees its balances, runs "Test connection" and sees the
result arrive without a reload (the test runs in the worker; the page follows the owner's
``account.tested`` event over the websocket); bad input on the form is shown at its input and
creates nothing; another user's account is a 404.

Headless Debian chromium through Playwright, against uvicorn and the embedded worker in this
process (tests/common/live_stack.py), started once for the module. The browser is started per
test, after the database fixtures: while Playwright's sync API is active this thread counts as
inside an event loop, where Django refuses the queries of pytest-django's per-test flush.
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from celery import shared_task

from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in

pytestmark = [pytest.mark.browser, transactional_db()]

# Functional waits (a step that never happens fails here), not performance budgets.
STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 30_000
SCREENSHOT = "/tmp/e2e-account.png"
GATE_TIMEOUT_S = 60.0

_gates: dict[str, tuple[threading.Event, threading.Event]] = {}


@shared_task(name="tests.e2e.worker_gate", ignore_result=True)
def worker_gate(key: str) -> None:
    entered, opened = _gates[key]
    entered.set()
    opened.wait(GATE_TIMEOUT_S)


@contextmanager
def worker_busy() -> Iterator[None]:
    """Keep the platform's one worker thread busy until the block ends, so what the page queues
    meanwhile runs only then: the user sees "Testing…" before the result, whatever the speed of
    this machine (a paper account's test takes milliseconds)."""
    key = uuid.uuid4().hex
    entered, opened = _gates[key] = (threading.Event(), threading.Event())
    worker_gate.delay(key)
    try:
        assert entered.wait(GATE_TIMEOUT_S), "the worker did not pick up the gate"
        yield
    finally:
        opened.set()
        _gates.pop(key, None)


@pytest.fixture(scope="module")
def platform(django_db_setup: Any) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as monkeypatch, live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def mallory_device(mallory: Any, enable_2fa: Any) -> Any:
    return enable_2fa(mallory)


@pytest.fixture
def browser(alice_device: Any, platform: LiveServer) -> Iterator[Any]:
    """Started after every database fixture (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Any, server: LiveServer, user: Any, device: Any, password: str) -> Any:
    context = browser.new_context(base_url=server.url, viewport={"width": 1300, "height": 1000})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, user.email, password)
    pass_second_factor(page, device, server.url)
    return page


def field(page: Any, name: str) -> Any:
    """The form field wrapping the input `name` (label, input, help and errors)."""
    return page.locator(f"#connect-form [data-field={name}]")


def test_a_user_connects_a_paper_account_and_tests_its_connection_live(
    alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, platform, alice, alice_device, password)

    # given: no account yet
    page.get_by_role("navigation").get_by_role("link", name="Accounts").click()
    expect(page.get_by_role("heading", name="Trading accounts")).to_be_visible()
    expect(page.locator("#accounts tbody")).to_contain_text("No accounts yet")

    # when: she opens a paper account with two starting balances
    page.get_by_role("link", name="New paper account").click()
    expect(page.get_by_role("heading", name="Paper account")).to_be_visible()
    page.get_by_label("Name").fill("Practice desk")
    page.get_by_label("Starting balances").fill("USDT 25000\nBTC 0.5")
    page.get_by_role("button", name="Connect").click()

    # then: she is on its page, where the connection test queued at connect reports her
    # balances (whether it landed before the page, or after, over the socket or the poll)
    expect(page.get_by_role("heading", name="Practice desk")).to_be_visible()
    expect(page.locator("#test-result")).to_contain_text("Connected", timeout=LIVE_TIMEOUT_MS)
    balances = page.locator("#balances tbody tr")
    expect(balances).to_have_count(2)
    for asset, free in (("USDT", "25000"), ("BTC", "0.5")):
        expect(balances.filter(has_text=asset).locator("td")).to_have_text([asset, free, "0"])

    # and the list shows it, active, its last test ok
    page.get_by_role("link", name="All accounts").click()
    row = page.locator("#accounts tbody tr", has_text="Practice desk")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Paper (simulated)")
    expect(row).to_contain_text("Active")
    expect(row.locator(".ok")).to_have_text("ok")

    # when: she tests the connection again from the account's page
    row.get_by_role("link", name="Practice desk").click()
    tested_at = page.locator("#last-test").get_attribute("data-tested-at")
    assert tested_at
    # (The page's fallback poll of the status URL is cut off: the result must come over the socket.)
    page.route("**/status/", lambda route: route.abort())
    with worker_busy():
        page.get_by_role("button", name="Test connection").click()
        expect(page.locator("#test-pending")).to_be_visible()
        expect(page.locator("#test-pending")).to_contain_text("Testing")
        expect(page.locator("#live-status")).to_have_text("live")
        page.evaluate("window.__sameDocument = true")

    # then: the worker's result arrives on this page, without a reload
    expect(page.locator("#last-test")).not_to_have_attribute("data-tested-at", tested_at, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#test-pending")).to_be_hidden()
    expect(page.locator("#test-result")).to_contain_text("Connected")
    expect(page.locator("#balances tbody tr").filter(has_text="USDT").locator("td")).to_have_text(
        ["USDT", "25000", "0"]
    )
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("#live-status")).to_have_text("live")
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.context.close()


def test_bad_input_on_the_connect_form_is_shown_at_its_input_and_creates_nothing(
    alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, platform, alice, alice_device, password)
    page.goto("/accounts/connect/paper/")

    # when: no name, and a balance that is not a number
    page.get_by_label("Name").fill("")
    page.get_by_label("Starting balances").fill("USDT lots")
    page.get_by_role("button", name="Connect").click()

    # then: each error is at its input
    expect(field(page, "name").locator(".field-errors")).to_have_text("This field is required.")
    expect(field(page, "balances").locator(".field-errors")).to_contain_text("“lots” is not a number")
    expect(page.get_by_label("Starting balances")).to_have_value("USDT lots")

    # when: a name, and a negative balance
    page.get_by_label("Name").fill("Practice desk")
    page.get_by_label("Starting balances").fill("USDT -5")
    page.get_by_role("button", name="Connect").click()

    # then: the balance is refused at its input, the name kept
    expect(field(page, "balances").locator(".field-errors")).to_have_text("Line 1: USDT cannot start below 0.")
    expect(field(page, "name").locator(".field-errors")).to_have_count(0)
    expect(page.get_by_label("Name")).to_have_value("Practice desk")

    # when: a negative fee
    page.get_by_label("Starting balances").fill("USDT 1000")
    page.get_by_label("Taker fee %").fill("-1")
    page.get_by_role("button", name="Connect").click()
    expect(field(page, "fee").locator(".field-errors")).to_contain_text("greater than or equal to 0")

    # then: no account was created
    page.get_by_role("link", name="All accounts").click()
    expect(page.locator("#accounts tbody")).to_contain_text("No accounts yet")
    expect(page.locator("#accounts tbody tr[data-account-id]")).to_have_count(0)
    page.context.close()


@pytest.fixture
def alices_account(alice: Any) -> Any:
    from apps.accounts.services import account_connect_paper

    return account_connect_paper(owner=alice, name="Alice private desk", balances={"USDT": Decimal("5000")})


def test_another_users_account_is_not_found(
    alices_account: Any, mallory: Any, mallory_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = signed_in(browser, platform, mallory, mallory_device, password)

    # Mallory's list does not show it.
    page.goto("/accounts/")
    expect(page.locator("#accounts tbody")).to_contain_text("No accounts yet")
    expect(page.locator("body")).not_to_contain_text("Alice private desk")

    # Its id in the URL is a 404, on every page of an account.
    for path in ("", "edit/", "status/"):
        response = page.goto(f"/accounts/{alices_account.pk}/{path}")
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        expect(page.locator("body")).not_to_contain_text("Alice private desk")
    page.context.close()
