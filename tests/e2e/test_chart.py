"""The chart page in a real browser: candles drawn, an indicator and a structure layer toggled,
and a newly closed bar pushed over the websocket moving the last candle without a reload.

Headless Debian chromium through Playwright's sync API, against uvicorn and the embedded worker
in this process (tests/common/live_stack.py). While Playwright's sync API is active this thread
counts as inside an event loop, so database writes and group sends run in a helper thread.
"""

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from apps.common.broadcast import group_send
from apps.marketdata.demo import random_walk
from apps.marketdata.models import Instrument
from apps.marketdata.services import instrument_get_or_create
from apps.marketdata.storage import candles_write
from apps.marketdata.streams import market_group
from tests.common.live_db import close_thread_connections, transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in

pytestmark = [pytest.mark.browser, transactional_db()]

SCREENSHOT = "/tmp/e2e-chart.png"
BARS = 300
STEP_TIMEOUT_MS = 15_000
LIVE_EVENT_TIMEOUT_MS = 5_000


@pytest.fixture
def btc(db: Any) -> Instrument:
    instrument = instrument_get_or_create(venue="binance", symbol="BTC/USDT", tick_size=Decimal("0.01"))
    frame = random_walk(
        bars=BARS, timeframe="1h", start_price=100.0, annual_vol=0.6, tick=0.01, seed=11,
        end=datetime(2024, 3, 1, tzinfo=UTC),
    )  # fmt: skip
    candles_write(instrument=instrument, timeframe="1h", frame=frame, source="import")
    return instrument


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def browser(btc: Instrument, alice_device: Any, platform: LiveServer) -> Iterator[Any]:
    """Started after every database fixture (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def in_thread(work: Callable[[], None]) -> None:
    """Run database work off the Playwright thread, with its own connection."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the test thread
            failure.append(exc)
        finally:
            close_thread_connections()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if failure:
        raise failure[0]


def close_bar(instrument: Instrument, ts: pd.Timestamp, open_: float, close: float) -> None:
    """What a feed does when a bar closes: store it, then announce it to the series' group."""
    bar = {
        "open": open_,
        "high": max(open_, close) + 0.2,
        "low": min(open_, close) - 0.2,
        "close": close,
        "volume": 42.0,
    }

    def work() -> None:
        frame = pd.DataFrame({k: [v] for k, v in bar.items()}, index=pd.DatetimeIndex([ts], name="ts"))
        candles_write(instrument=instrument, timeframe="1h", frame=frame, source="replay")
        group_send(
            market_group(instrument.pk, "1h"),
            "candle",
            {"instrument": instrument.pk, "timeframe": "1h", "ts": ts.isoformat(), **bar},
        )

    in_thread(work)


def open_chart(browser: Any, server: LiveServer, user: Any, device: Any, password: str, instrument: Instrument) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(base_url=server.url, viewport={"width": 1300, "height": 1000})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    sign_in(page, user.email, password)
    pass_second_factor(page, device, server.url)
    page.goto(f"/markets/{instrument.pk}/?tf=1h")
    expect(page.locator("#chart")).to_have_attribute("data-state", "ready")
    page.evaluate("window.__sameDocument = true")
    return page


def test_chart_draws_candles_indicators_and_structure_and_updates_live(
    btc: Instrument, alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    # given: alice on the BTC/USDT 1h chart
    page = open_chart(browser, platform, alice, alice_device, password, btc)
    chart = page.locator("#chart")

    # then: every stored bar is drawn on a canvas, with the default indicators and layers
    expect(chart).to_have_attribute("data-bars", str(BARS))
    assert page.locator("#chart canvas").count() > 0
    expect(chart).to_have_attribute("data-indicators", "ema:20,bbands:20:2,rsi:14")
    expect(page.locator(".tf-selector a.active")).to_have_text("1h")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator(".attribution").get_by_role("link", name="TradingView")).to_have_attribute(
        "href", "https://www.tradingview.com/"
    )

    # when: she adds MACD from the picker
    page.locator("#indicator-picker summary").click()
    page.locator(".indicator-toggle[value='macd:12:26:9']").check()
    # then: it is drawn (in a pane of its own)
    expect(chart).to_have_attribute("data-indicators", "ema:20,bbands:20:2,rsi:14,macd:12:26:9")
    page.locator("#indicator-picker summary").click()

    # when: she turns on the Fibonacci layer
    page.wait_for_function("() => document.querySelector('#structure-list h3') !== null")
    before = int(chart.get_attribute("data-structure") or "0")
    page.locator(".structure-toggle[value='fib']").check()
    # then: its levels join the structure drawn on the chart
    expect(page.locator("#structure-list h3", has_text="Fibonacci")).to_be_visible()
    page.wait_for_function(f"() => Number(document.querySelector('#chart').dataset.structure) > {before}")

    # when: a new bar closes and is announced on the series' stream
    expect(chart).to_have_attribute("data-subscribed", "confirmed")
    last = pd.Timestamp(int(chart.get_attribute("data-last-time") or "0"), unit="s", tz="UTC")
    new_ts = last + pd.Timedelta(hours=1)
    previous_close = float(chart.get_attribute("data-last-close") or "0")
    first_close, revised_close = round(previous_close + 0.37, 2), round(previous_close + 0.61, 2)
    close_bar(btc, new_ts, previous_close, first_close)

    # then: the chart shows it as the newest bar, without a reload
    expect(chart).to_have_attribute("data-last-close", str(first_close), timeout=LIVE_EVENT_TIMEOUT_MS)
    expect(chart).to_have_attribute("data-bars", str(BARS + 1))
    expect(chart).to_have_attribute("data-last-time", str(int(new_ts.timestamp())))

    # and a revised close of that same bar replaces it rather than adding one
    close_bar(btc, new_ts, previous_close, revised_close)
    expect(chart).to_have_attribute("data-last-close", str(revised_close), timeout=LIVE_EVENT_TIMEOUT_MS)
    expect(chart).to_have_attribute("data-bars", str(BARS + 1))
    assert page.evaluate("window.__sameDocument") is True
    page.wait_for_timeout(1800)  # let the indicator refresh after the new bar land before the picture
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.context.close()


def test_chart_reports_a_bad_custom_indicator_and_keeps_drawing(
    btc: Instrument, alice: Any, alice_device: Any, password: str, platform: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = open_chart(browser, platform, alice, alice_device, password, btc)
    chart = page.locator("#chart")
    page.locator("#indicator-picker summary").click()

    page.fill("#indicator-custom input[name=spec]", "sma:0")
    page.locator("#indicator-custom button").click()
    expect(page.locator("#chart-error")).to_contain_text("n must be between 1 and 1000")
    expect(chart).to_have_attribute("data-indicators", "ema:20,bbands:20:2,rsi:14")

    page.fill("#indicator-custom input[name=spec]", "ema:100")
    page.locator("#indicator-custom button").click()
    expect(chart).to_have_attribute("data-indicators", "ema:20,bbands:20:2,rsi:14,ema:100")
    expect(page.locator("#indicator-chips .chip")).to_have_count(1)
    expect(page.locator("#chart-error")).to_be_hidden()
    page.context.close()
