"""The issue's "done when" in a real browser: a user signs in, picks a pre-built strategy,
backtests it on real candles, watches the progress bar turn into the results, reads the metrics,
sees the equity chart drawn and downloads the report; writes a rule strategy (after being told
where it was wrong) and backtests it; optimises the first one and sees the heat map; runs a
walk-forward and a Monte Carlo and sees their pages.

Headless Debian chromium through Playwright's sync API, against uvicorn and the embedded worker
in this process (tests/common/live_stack.py). While Playwright's sync API is active this thread
counts as inside an event loop, so database reads run in a helper thread (tests/e2e/test_chart).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.backtests.models import Backtest, MonteCarlo, Optimisation, WalkForward
from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_chart import in_thread
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.marketdata.ohlcv import load_candles

pytestmark = [pytest.mark.browser, transactional_db()]

BARS = 1200
STEP_TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 45_000  # a job from submit to its results (numba compiles on a cold worker)
SCREENSHOTS = Path("/tmp")


@pytest.fixture
def demo_candles(db: Any, tmp_path: Path) -> Instrument:
    """The demo market: the newest real BTC/USDT 1h candles, imported from a file with the
    market-data import service, as `make run` seeds them."""
    frame = load_candles("BTC-USDT_1h").iloc[-BARS:]
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "BTC-USDT_1h.csv.gz"
    frame.to_csv(path, index_label="timestamp", compression="gzip")
    instrument = market_services.instrument_get_or_create(venue="binance", symbol="BTC/USDT", tick_size="0.01")
    result = market_services.candles_import_file(path=path, instrument=instrument, timeframe="1h")
    assert result.written == BARS
    return instrument


@pytest.fixture
def alice_device(alice: Any, enable_2fa: Any) -> Any:
    return enable_2fa(alice)


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> Iterator[LiveServer]:
    settings.OPTUNA_DATA_DIR = str(tmp_path / "optuna")
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def page(demo_candles: Instrument, alice: Any, alice_device: Any, password: str, platform: LiveServer) -> Iterator[Any]:
    """Alice signed in (password and second factor); started after every database fixture."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                base_url=platform.url, viewport={"width": 1300, "height": 1000}, accept_downloads=True
            )
            context.set_default_timeout(STEP_TIMEOUT_MS)
            tab = context.new_page()
            sign_in(tab, alice.email, password)
            pass_second_factor(tab, alice_device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def read(query: Any) -> Any:
    """A database read off the Playwright thread."""
    box: list[Any] = []
    in_thread(lambda: box.append(query()))
    return box[0]


def wait_for_results(page: Any, ready: str) -> bool:
    """Wait on a job page until ``ready`` shows; True when the page first showed the live
    progress bar (the job was still queued or running when it loaded)."""
    from playwright.sync_api import expect

    saw_progress = page.locator("#job-progress").count() > 0
    if saw_progress:
        expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator(ready)).to_be_visible(timeout=JOB_TIMEOUT_MS)
    return saw_progress


def test_a_new_user_backtests_optimises_and_stress_tests_a_strategy(page: Any, demo_candles: Instrument) -> None:
    from playwright.sync_api import expect

    # She picks a pre-built strategy from the catalogue.
    page.get_by_role("link", name="Strategies").first.click()
    page.screenshot(path=str(SCREENSHOTS / "e2e-strategies.png"), full_page=True)
    page.locator("[data-key=sma_cross] a", has_text="Backtest this").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "1")
    expect(page.locator("select[name=strategy]")).to_have_value("sma_cross")
    expect(page.locator("select[name=instrument]")).to_have_value(str(demo_candles.pk))
    # Switching strategy redraws the parameters from the catalogue, without a round trip.
    page.select_option("select[name=strategy]", "rsi_mean_reversion")
    expect(page.locator("[name=param_fast]")).to_have_count(0)
    page.select_option("select[name=strategy]", "sma_cross")
    page.fill("[name=param_fast]", "5")
    page.fill("[name=param_slow]", "20")
    page.fill("[name=stop_loss]", "4")
    page.screenshot(path=str(SCREENSHOTS / "e2e-backtest-form.png"), full_page=True)
    page.locator("#submit-run").click()

    # The result page follows the job live, then shows the results.
    page.wait_for_url("**/backtests/*/")
    page.wait_for_load_state()
    page.evaluate("window.__sameDocument = true")
    saw_progress = wait_for_results(page, "#metrics")
    backtest = read(lambda: Backtest.objects.get())
    assert backtest.status == "succeeded" and backtest.settings["exits"]["stop_loss"] == 0.04
    if saw_progress:  # the bar was there and the page turned into the results by itself
        assert page.evaluate("window.__sameDocument") is None  # it reloaded into them
    total_return = page.locator("[data-metric=total_return] td.num").first.inner_text()
    assert float(total_return.rstrip("%").replace(",", "")) == pytest.approx(
        backtest.metrics["total_return"] * 100, abs=0.005
    )
    expect(page.locator("#equity-chart")).to_have_attribute("data-state", "ready")
    assert page.locator("#equity-chart canvas").count() > 0
    expect(page.locator("#candles-chart")).to_have_attribute("data-state", "ready")
    assert int(page.locator("#candles-chart").get_attribute("data-markers") or "0") > 0
    assert page.locator("#trades tbody tr[data-trade]").count() == min(50, backtest.metrics["trades"])
    page.screenshot(path=str(SCREENSHOTS / "e2e-backtest.png"), full_page=True)

    # She downloads the report: one HTML file with the charts drawn in.
    with page.expect_download() as download_info:
        page.locator("#download-report").click()
    download = download_info.value
    assert download.suggested_filename == f"backtest-{backtest.pk}-sma_cross-BTC-USDT-1h.html"
    report = Path(download.path()).read_text()
    assert "<svg" in report and "<script" not in report and "Look-ahead check passed" in report
    backtest_url = page.url

    # She writes a rule strategy; a typo is shown at its box, then it saves.
    page.goto("/strategies/rules/new/")
    page.fill("[name=name]", "RSI dip")
    page.fill("[name=enter_long]", "rsi(14) < 35 and close > sma(50)")
    page.fill("[name=exit_long]", "rsi(14) > 65 and wobble(2) > 1")
    page.locator("#save-rules").click()
    expect(page.locator("[data-field=exit_long].has-error .field-errors")).to_contain_text("wobble")
    expect(page.locator("[name=enter_long]")).to_have_value("rsi(14) < 35 and close > sma(50)")
    page.screenshot(path=str(SCREENSHOTS / "e2e-rule-editor.png"), full_page=True)
    page.fill("[name=exit_long]", "rsi(14) > 65")
    page.locator("#save-rules").click()
    expect(page.locator(".messages")).to_contain_text("saved")
    page.locator("#backtest-rule-set").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "1")
    expect(page.locator("#strategy-summary")).to_contain_text("RSI dip")
    page.locator("#submit-run").click()
    page.wait_for_url("**/backtests/*/")
    wait_for_results(page, "#metrics")
    assert read(lambda: Backtest.objects.filter(strategy_key="rules", status="succeeded").count()) == 1

    # She optimises the first backtest and reads the heat map.
    page.goto(backtest_url)
    page.locator("#optimise").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "1")
    for name, low, high, step in (("fast", "4", "8", "2"), ("slow", "20", "40", "10")):
        page.fill(f"[name=low_{name}]", low)
        page.fill(f"[name=high_{name}]", high)
        page.fill(f"[name=step_{name}]", step)
    page.fill("[name=min_trades]", "1")
    page.locator("#submit-run").click()
    page.wait_for_url("**/optimisations/*/")
    wait_for_results(page, "#heatmap")
    optimisation = read(lambda: Optimisation.objects.get())
    assert optimisation.status == "succeeded" and optimisation.trials_done == 9
    assert page.locator("#heatmap td").count() == 9
    expect(page.locator("#heatmap-legend")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "e2e-optimisation.png"), full_page=True)
    page.locator("#backtest-best").click()
    page.wait_for_url("**/backtests/*/")
    wait_for_results(page, "#metrics")

    # A walk-forward of the same strategy.
    page.goto(backtest_url)
    page.locator("#walk-forward").click()
    expect(page.locator("#run-form")).to_have_attribute("data-ready", "1")
    for name, low, high, step in (("fast", "4", "8", "2"), ("slow", "20", "40", "10")):
        page.fill(f"[name=low_{name}]", low)
        page.fill(f"[name=high_{name}]", high)
        page.fill(f"[name=step_{name}]", step)
    page.fill("[name=windows_count]", "3")
    page.fill("[name=min_trades]", "1")
    page.locator("#submit-run").click()
    page.wait_for_url("**/walk-forwards/*/")
    wait_for_results(page, "#windows")
    assert page.locator("#windows tbody tr[data-window]").count() == 3
    expect(page.locator("#equity-chart")).to_have_attribute("data-state", "ready")
    assert read(lambda: WalkForward.objects.get().status) == "succeeded"
    page.screenshot(path=str(SCREENSHOTS / "e2e-walk-forward.png"), full_page=True)

    # And a Monte Carlo of the first backtest's trades.
    page.goto(backtest_url)
    page.locator("#monte-carlo").click()
    page.fill("[name=simulations]", "1000")
    page.locator("#submit-run").click()
    page.wait_for_url("**/monte-carlo/*/")
    wait_for_results(page, "#percentile-table")
    assert page.locator("#final-equity-histogram svg").count() == 1
    assert page.locator("#fan-chart svg polyline").count() > 5
    assert read(lambda: MonteCarlo.objects.get().status) == "succeeded"
    page.screenshot(path=str(SCREENSHOTS / "e2e-monte-carlo.png"), full_page=True)

    # Every run is listed on the backtests page.
    page.get_by_role("link", name="Backtests").first.click()
    assert page.locator("#backtests tbody tr[data-backtest-id]").count() == 3
    for section in ("optimisations", "walk-forwards", "monte-carlo"):
        assert page.locator(f"#{section} tbody tr:not(.empty)").count() == 1
