"""The issue's "done when" for deployments, in a real browser: a user with a paper account
creates a paper deployment from the form, starts it, candles arrive, and the deployment page
shows the signal, the order and the fill live (over the websocket, without a reload), with the
entry marker on the chart.

Headless Debian chromium through Playwright, against uvicorn and the embedded worker in this
process (tests/common/live_stack.py): the bars are stored as closed by a helper thread with
`candles_store_closed`, as the live feed does; the announcement queues the ticks on the
in-memory broker and the embedded worker runs them.
"""

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
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

STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 30_000
SCREENSHOTS = Path("/tmp")


@pytest.fixture
def market(db: Any) -> Instrument:
    instrument = market_services.instrument_get_or_create(
        venue="test", symbol="TST/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    candles_write(instrument=instrument, timeframe="1m", frame=walk(HISTORY_BARS), source="test")
    return instrument


@pytest.fixture
def setup(market: Instrument, alice: Any) -> dict[str, Any]:
    from apps.accounts.services import account_connect_paper
    from apps.strategies import services as strategy_services

    account = account_connect_paper(owner=alice, name="Paper", balances={"USDT": Decimal("100000")})
    rules = strategy_services.rules_normalise(conditions={"enter_long": "close > 0"})
    rule_set = strategy_services.rule_set_create(owner=alice, name="Always in", rules=rules)
    return {"account": account, "rule_set": rule_set}


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def page(setup: Any, alice: Any, alice_device: Any, password: str, platform: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1300, "height": 1100})
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


def test_a_user_deploys_on_paper_and_watches_it_trade_live(page: Any, market: Instrument, setup: Any) -> None:
    from playwright.sync_api import expect

    # She opens the form and deploys her rule strategy on her paper account.
    page.goto("/strategies/deployments/")
    page.locator("#new-deployment").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "1")
    page.select_option("select[name=strategy]", f"rules:{setup['rule_set'].pk}")
    page.select_option("select[name=account]", str(setup["account"].pk))
    page.select_option("select[name=instruments]", [str(market.pk)])
    page.select_option("select[name=timeframe]", "1m")
    page.fill("[name=capital]", "5000")
    page.select_option("select[name=sizing_mode]", "fixed_fraction")
    page.fill("[name=fraction]", "50")
    page.fill("[name=stop_loss]", "5")
    page.screenshot(path=str(SCREENSHOTS / "e2e-deployment-form.png"), full_page=True)
    page.locator("#save-deployment").click()
    expect(page.locator("#deployment-status")).to_have_attribute("data-status", "draft")

    # She starts it; the page is live.
    page.locator("#start-deployment").click()
    expect(page.locator("#deployment-status")).to_have_attribute("data-status", "paper")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#chart")).to_have_attribute("data-state", "ready")
    expect(page.locator("#chart")).to_have_attribute("data-subscribed", "confirmed")

    # A bar closes: the signal and the entry order appear without a reload.
    bars = next_bars(2)
    close_bar(market, bars.iloc[:1])
    expect(page.locator("#signals tbody tr").first).to_contain_text("Enter long", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#orders tbody tr[data-order]").first).to_contain_text("entry", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#chart")).to_have_attribute("data-bars", str(HISTORY_BARS + 1))

    # The next bar closes: the paper venue fills the entry at its open; the fill, the position
    # and the marker arrive.
    close_bar(market, bars.iloc[1:2])
    expect(page.locator("#fills tbody tr[data-fill]")).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#fills tbody tr[data-fill]").first).to_contain_text("buy")
    expect(page.locator("#positions tbody tr[data-instrument]")).to_have_count(1)
    expect(page.locator("#chart")).to_have_attribute("data-markers", "1", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#pnl-fills")).to_have_text("1", timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=str(SCREENSHOTS / "e2e-deployment-live.png"), full_page=True)

    # She pauses it from the page.
    page.locator("#pause-deployment").click()
    expect(page.locator("#deployment-status")).to_have_attribute("data-status", "paused")
