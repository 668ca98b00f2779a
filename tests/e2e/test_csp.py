"""The Content-Security-Policy lets the portal's pages work: Chromium loads the main pages
(sign-in, dashboard with its live socket, markets and a chart drawn by lightweight-charts,
strategies, backtests, deployments with a running one, the marketplace and a listing with its
inline styles, accounts and an account page with its inline confirm handler, trading, ML
strategies: the list, the form and a model page) and
reports no CSP violation, neither on the console nor as a `securitypolicyviolation` event.

Headless Debian chromium through Playwright against uvicorn and the embedded worker in this
process (tests/common/live_stack.py); database fixtures run before Playwright starts.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from apps.marketplace.models import Listing
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.marketplace.test_subscription_views import approved_listing, btc_market

pytestmark = [pytest.mark.browser, transactional_db()]

STEP_TIMEOUT_MS = 15_000
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${where})`);
});
"""


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def listing(alice: Any, staff: Any) -> Listing:
    return approved_listing(alice, staff, btc_market(), title="Alice's BTC trend")


@pytest.fixture
def ml_strategy(alice: Any, listing: Listing) -> Any:
    from apps.ml.services import ml_strategy_create

    instrument = listing.deployment.instruments.get()
    return ml_strategy_create(
        owner=alice, data={"name": "BTC model", "instrument_ids": [instrument.pk], "timeframe": "1h"}
    )


@pytest.fixture
def pages(listing: Listing, ml_strategy: Any) -> list[str]:
    """The pages to load, resolved before the browser starts (database reads)."""
    deployment = listing.deployment
    instrument = deployment.instruments.get()
    return [
        reverse("dashboard"),
        reverse("marketdata:instrument-list"),
        reverse("marketdata:instrument-chart", args=[instrument.pk]) + "?tf=1h",
        reverse("strategies:catalogue"),
        reverse("backtests:list"),
        reverse("backtests:new"),
        reverse("strategies:deployment-list"),
        reverse("strategies:deployment-detail", args=[deployment.pk]),
        reverse("marketplace:list"),
        reverse("marketplace:detail", args=[listing.pk]),
        reverse("accounts:list"),
        reverse("accounts:detail", args=[deployment.account_id]),
        reverse("trades:orders"),
        reverse("ml:list"),
        reverse("ml:new"),
        reverse("ml:detail", args=[ml_strategy.pk]),
        reverse("ml:edit", args=[ml_strategy.pk]),
        reverse("two_factor_index"),
        reverse("tokens"),
    ]


@pytest.fixture
def page(pages: list[str], alice: Any, enable_2fa: Any, platform: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    device = enable_2fa(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1300, "height": 1000})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            context.add_init_script(COLLECT_VIOLATIONS)
            tab = context.new_page()
            tab.device = device
            yield tab
            context.close()
        finally:
            browser.close()


def test_the_main_pages_load_without_csp_violations(
    page: Any, pages: list[str], alice: Any, password: str, platform: LiveServer
) -> None:
    console: list[str] = []
    page.on(
        "console",
        lambda message: (
            console.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text
            else None
        ),
    )
    violations: list[str] = []

    def visit(path: str | None = None) -> None:
        if path is not None:
            response = page.goto(path)
            assert response is not None and response.status == 200, (path, response and response.status)
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # late scripts: charts drawing, the socket opening
        violations.extend(f"{page.url}: {v}" for v in page.evaluate("window.__cspViolations"))

    # signed out: the sign-in page, then the second-factor page
    visit("/accounts/login/")
    sign_in(page, alice.email, password)
    visit()
    pass_second_factor(page, page.device, platform.url)
    visit()
    for path in pages:
        visit(path)

    # the pages did their work under the policy: the chart drew, the live socket connected
    page.goto(pages[2])
    page.locator("#chart[data-state=ready]").wait_for()
    page.goto(pages[0])
    page.locator("#live-status", has_text="live").wait_for()
    visit()

    assert violations == []
    assert console == []
