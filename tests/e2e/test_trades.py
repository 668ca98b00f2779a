"""Trading in a real browser: a user places a manual market order on her paper account from the
trading pages, sees it in the orders table, and when the next bar closes the fill and the
position appear without a reload (the owner's ``trade.*`` events over the websocket refresh the
tables); a resting limit order is cancelled from the orders table; an order the risk checks or
the venue refuse shows why.

Headless Debian chromium through Playwright, against uvicorn and the embedded worker in this
process (tests/common/live_stack.py), started once for the module. The browser is started per
test, after the database fixtures: while Playwright's sync API is active this thread counts as
inside an event loop, where Django refuses queries, so bars are stored as closed by a helper
thread with `candles_store_closed`, as the live feed does.
"""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_chart import in_thread
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.strategies.deploy_support import HISTORY_BARS, next_bars, walk

pytestmark = [pytest.mark.browser, transactional_db()]

# Functional waits (a step that never happens fails here), not performance budgets.
STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 30_000
SCREENSHOT = "/tmp/e2e-trades.png"
ACCOUNT = "Paper (Paper (simulated))"
INSTRUMENT = "TST/USDT @ test"


@pytest.fixture(scope="module")
def platform(django_db_setup: Any) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as monkeypatch, live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def market(db: Any) -> Instrument:
    instrument = market_services.instrument_get_or_create(
        venue="test", symbol="TST/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    candles_write(instrument=instrument, timeframe="1m", frame=walk(HISTORY_BARS), source="test")
    return instrument


@pytest.fixture
def account(alice: Any) -> Any:
    from apps.accounts.services import account_connect_paper

    return account_connect_paper(owner=alice, name="Paper", balances={"USDT": Decimal("10000")})


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def page(
    market: Instrument, account: Any, alice: Any, alice_device: Any, password: str, platform: LiveServer
) -> Iterator[Any]:
    """Alice signed in; started after every database fixture (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            tab = context.new_page()
            sign_in(tab, alice.email, password)
            pass_second_factor(tab, alice_device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def close_bar(market: Instrument, frame: Any) -> None:
    def store() -> None:
        market_services.candles_store_closed(instrument=market, timeframe="1m", frame=frame, source="test")

    in_thread(store)


def place_order(page: Any, *, side: str, type_: str, quantity: str, price: str = "") -> None:
    """Fill the manual order form (from any trading page) and submit it."""
    from playwright.sync_api import expect

    page.locator(".page-head").get_by_role("link", name="New order").click()
    expect(page.get_by_role("heading", name="New order")).to_be_visible()
    page.get_by_label("Account").select_option(label=ACCOUNT)
    page.get_by_label("Instrument").select_option(label=INSTRUMENT)
    page.get_by_label("Side").select_option(label=side)
    page.get_by_label("Type").select_option(label=type_)
    page.get_by_label("Quantity").fill(quantity)
    if price:
        page.get_by_label("Price", exact=True).fill(price)
    page.get_by_role("button", name="Place order").click()


def live_tab(page: Any, path: str) -> Any:
    """Another tab of the same session on a trading page, its socket open."""
    from playwright.sync_api import expect

    tab = page.context.new_page()
    tab.goto(path)
    expect(tab.locator("#live-status")).to_have_text("live")
    tab.evaluate("window.__sameDocument = true")
    return tab


def test_a_manual_market_buy_fills_on_the_next_bar_live(page: Any, market: Instrument) -> None:
    from playwright.sync_api import expect

    # given: the trading pages, nothing traded yet
    page.get_by_role("navigation").get_by_role("link", name="Trading").click()
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    expect(page.locator("#orders tbody")).to_contain_text("No orders")

    # when: she buys 10 TST at market
    place_order(page, side="Buy", type_="Market", quantity="10")

    # then: the order's page says it is placed and resting at the paper venue until the next bar
    expect(page.locator(".messages")).to_contain_text("placed")
    expect(page.locator("#order-status")).to_have_text("Open")
    page.get_by_role("link", name="Orders", exact=True).click()
    row = page.locator("#orders tbody tr[data-order-id]")
    expect(row).to_have_count(1)
    for text in ("Paper", "manual", "TST/USDT", "Buy", "Market", "Open"):
        expect(row).to_contain_text(text)
    expect(row.locator("td").nth(7)).to_have_text("10")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")

    # and the fills and positions pages, open in other tabs, have nothing yet
    fills = live_tab(page, "/trades/fills/")
    expect(fills.locator("#fills tbody")).to_contain_text("No fills yet.")
    positions = live_tab(page, "/trades/positions/")
    expect(positions.locator("#positions tbody")).to_contain_text("No open positions.")

    # when: the next bar closes; the paper venue fills the order at its open
    bar = next_bars(1)
    opened_at = f"{Decimal(str(bar['open'].iloc[0])).normalize():f}"
    close_bar(market, bar)

    # then: every page shows it without a reload
    expect(row.locator("[data-status]")).to_have_text("Filled", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator("td").nth(9)).to_have_text(f"10 @ {opened_at}")
    fill = fills.locator("#fills tbody tr[data-fill-id]")
    expect(fill).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(fill).to_contain_text("Buy")
    expect(fill.locator("td").nth(5)).to_have_text("10")
    expect(fill.locator("td").nth(6)).to_have_text(opened_at)
    position = positions.locator("#positions tbody tr[data-position-id]")
    expect(position).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(position).to_contain_text("TST/USDT")
    expect(position.locator("td").nth(3)).to_have_text("10")
    expect(position.locator("td").nth(4)).to_have_text(opened_at)
    for tab in (page, fills, positions):
        assert tab.evaluate("window.__sameDocument") is True
    positions.screenshot(path=SCREENSHOT, full_page=True)


def test_a_resting_limit_order_is_cancelled_from_the_orders_table(page: Any) -> None:
    from playwright.sync_api import expect

    # given: a limit buy far below the market, resting
    page.goto("/trades/")
    place_order(page, side="Buy", type_="Limit", quantity="0.5", price="50")
    expect(page.locator("#order-status")).to_have_text("Open")

    # when: she cancels it from the orders table
    page.get_by_role("link", name="Orders", exact=True).click()
    row = page.locator("#orders tbody tr[data-order-id]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Limit")
    expect(row.locator("td").nth(8)).to_have_text("50")
    row.get_by_role("button", name="Cancel").click()

    # then: she is back on the orders table, the order cancelled, no cancel button left
    expect(page.locator(".messages")).to_contain_text("Asked to cancel")
    expect(page.get_by_role("heading", name="Orders")).to_be_visible()
    expect(row.locator("[data-status]")).to_have_text("Cancelled", timeout=LIVE_TIMEOUT_MS)
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0)


def test_orders_over_a_risk_limit_or_the_balance_are_refused_with_the_reason(page: Any, account: Any) -> None:
    from playwright.sync_api import expect

    # given: she limits one order's value on her account to 500 USDT
    page.get_by_role("navigation").get_by_role("link", name="Accounts").click()
    page.get_by_role("link", name="Paper", exact=True).click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Risk limits (JSON)").fill('{"max_order_notional": 500}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Saved.")

    # when: she buys 10 TST (about 1000 USDT) at market
    page.get_by_role("navigation").get_by_role("link", name="Trading").click()
    place_order(page, side="Buy", type_="Market", quantity="10")

    # then: the form stays, with the refusal above it and her values kept
    refusal = page.get_by_role("alert")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("500")
    expect(page.get_by_label("Quantity")).to_have_value("10")
    reason = refusal.inner_text().strip()

    # and the refused order is listed with its reason
    page.get_by_role("link", name="Refused orders & risk").click()
    event = page.locator("#risk-events tbody tr[data-event-id]")
    expect(event).to_have_count(1)
    expect(event).to_contain_text("max_order_notional")
    expect(event.locator("td").nth(5)).to_have_text(reason)
    page.get_by_role("link", name="Orders", exact=True).click()
    expect(page.locator("#orders tbody tr[data-order-id] [data-status]")).to_have_text("Rejected")

    # when: the limit is lifted and she buys more than her 10000 USDT pay for (about 50000)
    page.goto(f"/accounts/{account.pk}/edit/")
    page.get_by_label("Risk limits (JSON)").fill("")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Saved.")
    page.goto("/trades/")
    place_order(page, side="Buy", type_="Market", quantity="500")

    # then: the order's page shows it rejected, and why
    expect(page.locator("#order-status")).to_have_text("Rejected")
    expect(page.locator(".facts")).to_contain_text("nsufficient")
    page.get_by_role("link", name="Refused orders & risk").click()
    expect(page.locator("#risk-events tbody tr[data-event-id]")).to_have_count(2)
    page.screenshot(path="/tmp/e2e-trades-refused.png", full_page=True)
