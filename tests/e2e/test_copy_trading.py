"""Copy trading in a real browser: bob subscribes his paper account to alice's approved listing
through the subscribe form, then alice's deployment fills and the fan-out copies it: the copied
trade appears on bob's subscription page without a reload (``copy.trade`` and the trades app's
events over the websocket), beside the leader's fill price, with the slippage between them.

Headless Debian chromium through Playwright against uvicorn and the embedded worker in this
process (tests/common/live_stack.py). Database work while the browser runs happens in helper
threads (Playwright's sync API makes this thread count as inside an event loop).
"""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from apps.marketplace.models import CopyTrade, Listing, Subscription
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_chart import in_thread
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.marketplace.test_subscription_views import approved_listing, btc_market, leader_fill

pytestmark = [pytest.mark.browser, transactional_db()]

STEP_TIMEOUT_MS = 15_000
LIVE_TIMEOUT_MS = 30_000
SCREENSHOT = "/tmp/e2e-copy-trading.png"


@pytest.fixture(scope="module")
def platform(django_db_setup: Any) -> Iterator[LiveServer]:
    with pytest.MonkeyPatch.context() as monkeypatch, live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def listing(alice: Any, staff: Any) -> Listing:
    return approved_listing(alice, staff, btc_market(), title="Alice's BTC trend", min_allocation=Decimal("1000"))


@pytest.fixture
def bob_account(bob: Any) -> Any:
    from apps.accounts.services import account_connect_paper

    # The paper venue charges bob 20 bps of slippage: his copies fill worse than the leader.
    return account_connect_paper(
        owner=bob,
        name="Bob paper",
        balances={"USDT": Decimal("50000")},
        costs={"fee": 0.001, "slippage": "fixed_bps", "slippage_bps": 20},
    )


@pytest.fixture
def page(
    listing: Listing, bob_account: Any, bob: Any, enable_2fa: Any, password: str, platform: LiveServer
) -> Iterator[Any]:
    """Bob signed in; started after every database fixture."""
    from playwright.sync_api import sync_playwright

    device = enable_2fa(bob)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            tab = context.new_page()
            sign_in(tab, bob.email, password)
            pass_second_factor(tab, device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def test_a_subscriber_sees_the_copied_trade_live_beside_the_leaders(page: Any, listing: Listing, bob: Any) -> None:
    from playwright.sync_api import expect

    # given: bob subscribes his paper account through the form
    page.goto(f"/marketplace/{listing.pk}/subscribe/")
    expect(page.get_by_role("heading", name="Copy “Alice's BTC trend”")).to_be_visible()
    page.get_by_label("Trading account").select_option(label="Bob paper (Paper (simulated))")
    page.get_by_label("Allocation").fill("10000")
    page.get_by_label("Position size").select_option(label="Multiplier of the leader's size")
    page.get_by_label("Multiplier").fill("0.5")
    page.get_by_label("Let the leader see who I am").check()
    page.get_by_role("button", name="Start copying").click()

    expect(page.locator(".messages")).to_contain_text("You are copying")
    expect(page.locator("#subscription-status")).to_have_text("Copying")
    expect(page.locator("#copies tbody")).to_contain_text("No copied trade yet")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")
    holder: dict[str, Any] = {}

    def subscribed() -> None:
        holder["subscription"] = Subscription.objects.get(follower=bob, listing=listing)

    in_thread(subscribed)
    assert holder["subscription"].multiplier == Decimal("0.5")

    # when: the leader buys 2 BTC and the fan-out runs
    def leader_trades() -> None:
        from apps.marketplace.services.fanout import copy_fanout_run

        fill = leader_fill(listing, quantity="2")
        copy_fanout_run(leader_fill_id=fill.pk)
        copy_trade = CopyTrade.objects.select_related("order").get(leader_fill=fill)
        holder.update(fill=fill, copy=copy_trade)

    in_thread(leader_trades)

    # then: the copied trade appears without a reload, beside the leader's price, with the slippage
    fill, copy_trade = holder["fill"], holder["copy"]
    assert copy_trade.status == CopyTrade.Status.ORDERED and copy_trade.quantity == Decimal("1")
    average = copy_trade.order.average_price
    slippage = ((average - fill.price) / fill.price * 10000).quantize(Decimal("0.01"))
    assert slippage > 0  # 20 bps of paper slippage: bob paid more than the leader
    row = page.locator(f'#copies tbody tr[data-copy="{copy_trade.pk}"]')
    expect(row).to_have_count(1, timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".leader-price")).to_have_text(f"{fill.price.normalize():f}")
    expect(row.locator(".follower-price")).to_have_text(f"{average.normalize():f}", timeout=LIVE_TIMEOUT_MS)
    expect(row.locator(".slippage")).to_have_text(str(slippage))
    expect(row).to_contain_text("BTC/USDT")
    expect(row.locator(".order-status")).to_have_text("Filled")
    expect(page.locator("#pnl-fills")).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=SCREENSHOT, full_page=True)
