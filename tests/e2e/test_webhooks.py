"""TradingView webhooks in a real browser: alice enables her paper deployment's webhook on its
page, copies the URL and the secret shown once, and an alert POSTed to that URL (as TradingView
sends it: a text body with the secret in it) appears on her deployment page without a reload,
with the order it placed; a refused alert (a wrong secret) appears too, with why.

Headless Debian chromium through Playwright against uvicorn and the embedded worker in this
process (tests/common/live_stack.py); the alerts are real HTTP requests to that server.
"""

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.marketdata.storage import candles_write
from apps.strategies.models import Deployment
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_chart import in_thread
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.strategies.deploy_support import HISTORY_BARS, deployment_kwargs, next_bars, walk
from tests.strategies.test_webhooks import SilentStrategy

pytestmark = [pytest.mark.browser, transactional_db()]

STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 30_000
SCREENSHOT = "/tmp/e2e-webhooks.png"
assert SilentStrategy.key == "test_webhook_silent"


@pytest.fixture
def market(db: Any) -> Instrument:
    instrument = market_services.instrument_get_or_create(
        venue="test", symbol="TST/USDT", tick_size="0.01", lot_size="0.0001", min_notional="1"
    )
    candles_write(instrument=instrument, timeframe="1m", frame=walk(HISTORY_BARS), source="test")
    return instrument


@pytest.fixture
def deployment(market: Instrument, alice: Any) -> Deployment:
    from apps.accounts.services import account_connect_paper
    from apps.strategies.services import deployments as services

    account = account_connect_paper(owner=alice, name="Paper", balances={"USDT": Decimal("100000")})
    created = services.deployment_create(
        **deployment_kwargs(market, account, strategy_key="test_webhook_silent", name="TV bot")
    )
    return services.deployment_start(deployment=created, mode="paper")


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def page(deployment: Deployment, alice: Any, enable_2fa: Any, password: str, platform: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    device = enable_2fa(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1300, "height": 1400})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            tab = context.new_page()
            sign_in(tab, alice.email, password)
            pass_second_factor(tab, device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def send_alert(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 (the test's own loopback server)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "text/plain; charset=utf-8"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_owner_enables_the_webhook_and_sees_an_alert_trade_live(
    page: Any, deployment: Deployment, market: Instrument
) -> None:
    from playwright.sync_api import expect

    # She enables the webhook on her deployment's page: the URL and the secret are shown once.
    page.goto(f"/strategies/deployments/{deployment.pk}/")
    expect(page.locator("#webhook-attempts tbody")).to_contain_text("No signal received yet")
    page.locator("#webhook-enable").click()
    expect(page.locator("#webhook-secret")).to_be_visible()
    url = page.locator("#webhook-url").inner_text().strip()
    secret = page.locator("#webhook-secret").inner_text().strip()
    assert url.endswith("/") and "/hooks/tradingview/" in url and secret.startswith("tvwh_")
    expect(page.locator("#webhook-alert-message")).to_contain_text("{{timenow}}")

    # Back on the deployment page, live, the secret nowhere on it.
    page.locator("#webhook-back").click()
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#webhook-state")).to_have_text("enabled")
    assert secret not in page.content()
    page.evaluate("window.__sameDocument = true")

    # TradingView fires an alert: a buy of TSTUSDT.
    now = timezone.now().isoformat().replace("+00:00", "Z")
    status, answer = send_alert(
        url, {"secret": secret, "action": "buy", "symbol": "TSTUSDT", "timestamp": now, "nonce": f"TSTUSDT-{now}"}
    )
    assert status == 200, answer
    order_id = answer["orders"][0]["id"]
    client_order_id = answer["orders"][0]["client_order_id"]

    # The attempt and the order appear without a reload.
    first_attempt = page.locator("#webhook-attempts tbody tr").first
    expect(first_attempt).to_contain_text("accepted: ok", timeout=LIVE_TIMEOUT_MS)
    expect(first_attempt).to_contain_text(f"#{order_id}")
    order_row = page.locator(f'#orders tbody tr[data-order="{order_id}"]')
    expect(order_row).to_contain_text(client_order_id, timeout=LIVE_TIMEOUT_MS)
    expect(order_row).to_contain_text("buy")

    # A replay of the same alert, and one with a wrong secret: refused, shown with why.
    status, answer = send_alert(
        url, {"secret": secret, "action": "buy", "symbol": "TSTUSDT", "timestamp": now, "nonce": f"TSTUSDT-{now}"}
    )
    assert status == 409 and answer["error"]["code"] == "replayed_nonce"
    expect(page.locator("#webhook-attempts tbody tr").first).to_contain_text(
        "refused: replayed_nonce", timeout=LIVE_TIMEOUT_MS
    )
    status, answer = send_alert(
        url, {"secret": "tvwh_wrong", "action": "sell", "symbol": "TSTUSDT", "timestamp": now, "nonce": "x"}
    )
    assert status == 401 and secret not in json.dumps(answer)
    expect(page.locator("#webhook-attempts tbody tr").first).to_contain_text(
        "refused: bad_secret", timeout=LIVE_TIMEOUT_MS
    )

    # The next bar closes: the paper venue fills the order, live too.
    def close_bar() -> None:
        market_services.candles_store_closed(
            instrument=market, timeframe="1m", frame=next_bars(1).iloc[:1], source="test"
        )

    in_thread(close_bar)
    expect(order_row.locator(".order-status")).to_have_attribute("data-status", "filled", timeout=LIVE_TIMEOUT_MS)
    expect(page.locator("#fills tbody tr").first).to_contain_text("buy", timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=SCREENSHOT, full_page=True)
