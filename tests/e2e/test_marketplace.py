# ruff: noqa: F811 - fixtures imported from tests.marketplace.conftest and tests.trades.execution_support
"""The marketplace in a real browser (headless Debian chromium through Playwright, against the
live stack of tests/common/live_stack.py):

- a visitor (bob) browses the marketplace, filters it, opens an approved listing and sees the
  verified equity chart drawn, labelled paper;
- a leader (alice) publishes one of her running deployments as a listing and submits it for
  review.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from apps.marketplace.models import Listing
from apps.marketplace.services.track_record import listing_stats_refresh
from tests.common.live_db import close_thread_connections, transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.marketplace.conftest import (  # noqa: F401  (fixtures)
    approve,
    leader_account,
    leader_deployment,
    leader_trade,
    leader_with_fills,
    make_listing,
)
from tests.trades.execution_support import make_deployment, paper_btc  # noqa: F401  (paper_btc: a fixture)

pytestmark = [pytest.mark.browser, transactional_db()]

STEP_TIMEOUT_MS = 15_000


@pytest.fixture
def market(leader_with_fills: Any, make_listing: Any, staff: Any, paper_btc: Any) -> dict[str, Any]:
    btc = approve(make_listing(leader_with_fills, title="BTC trend follower", tags=["trend"]), staff)
    listing_stats_refresh(listing_id=btc.pk)
    other = make_deployment(leader_with_fills.account, paper_btc, name="Stocks carry")
    stocks = approve(make_listing(other, title="Calm stocks", asset_class="stocks"), staff)
    unlisted = make_deployment(leader_with_fills.account, paper_btc, name="ETH swing")
    return {"btc": btc, "stocks": stocks, "unlisted": unlisted}


@pytest.fixture
def devices(alice: Any, bob: Any, enable_2fa: Any) -> dict[str, Any]:
    """Their TOTP devices, made before the browser starts: Playwright's sync API runs an event
    loop in this thread, and Django refuses database calls from it."""
    return {"alice": enable_2fa(alice), "bob": enable_2fa(bob)}


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in_tab(browser: Any, platform: LiveServer, user: Any, device: Any, password: str) -> Any:
    context = browser.new_context(base_url=platform.url, viewport={"width": 1300, "height": 1000})
    context.set_default_timeout(STEP_TIMEOUT_MS)
    tab = context.new_page()
    sign_in(tab, user.email, password)
    pass_second_factor(tab, device, platform.url)
    return tab


def test_a_visitor_browses_and_a_leader_publishes(
    market: dict[str, Any],
    devices: dict[str, Any],
    alice: Any,
    bob: Any,
    password: str,
    platform: LiveServer,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    # Bob browses the marketplace: both approved listings are there.
    visitor = signed_in_tab(browser, platform, bob, devices["bob"], password)
    visitor.goto("/")
    visitor.get_by_role("link", name="Marketplace").click()
    cards = visitor.locator("#listings .listing-card")
    expect(cards).to_have_count(2)

    # He filters to crypto: only the BTC listing is left.
    visitor.select_option("#id_asset_class", "crypto")
    visitor.locator("#apply-filters").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("BTC trend follower")

    # He opens it: the verified equity curve is drawn, labelled paper.
    cards.first.get_by_role("link", name="BTC trend follower").click()
    chart = visitor.locator("#equity-chart")
    expect(chart).to_have_attribute("data-state", "ready")
    assert int(chart.get_attribute("data-points") or 0) >= 4
    expect(chart.locator("canvas").first).to_be_visible()
    expect(visitor.locator("#track-label")).to_have_text("paper")
    expect(visitor.locator("#copy-strategy")).to_have_attribute("href", f"/marketplace/{market['btc'].pk}/subscribe/")
    visitor.screenshot(path="/tmp/e2e-marketplace-listing.png", full_page=True)

    # Alice publishes her unlisted deployment and submits it for review.
    leader = signed_in_tab(browser, platform, alice, devices["alice"], password)
    leader.goto("/marketplace/mine/")
    leader.locator("#publish-listing").click()
    leader.select_option("#id_deployment_id", str(market["unlisted"].pk))
    leader.fill("#id_title", "ETH swing, published")
    leader.fill("#id_description", "Swing trades on **ETH**.")
    leader.fill("#id_tags", "swing, eth")
    leader.fill("#id_performance_fee_pct", "15")
    leader.locator("#save-listing").click()
    expect(leader.locator("#listing-status")).to_have_attribute("data-status", "draft")
    leader.locator("#submit-listing").click()
    expect(leader.locator("#listing-status")).to_have_attribute("data-status", "pending")

    # The database is read from a thread of its own (this one runs Playwright's event loop).
    def read() -> Listing:
        try:
            return Listing.objects.get(deployment=market["unlisted"])
        finally:
            close_thread_connections()

    with ThreadPoolExecutor(1) as pool:
        listing = pool.submit(read).result()
    assert (listing.status, listing.tags, listing.owner_id) == ("pending", ["swing", "eth"], alice.pk)
    assert "<strong>ETH</strong>" in listing.description_html
