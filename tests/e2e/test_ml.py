"""The issue's "done when" for ML strategies in a real browser: a new user creates an ML strategy
on real candles through the form (after being told where the form was wrong), trains it, watches
the progress and the result arrive live (promoted, with its metrics, the importances drawn after),
deploys it on paper and lands on the deployment page. Then a training that cannot work (a label
with one class only) shows "failed" with the reason, and the promoted version stays. No page
breaks the Content-Security-Policy.

Headless Debian chromium through Playwright's sync API, against uvicorn and the embedded worker
(its "ml" queue included) in this process (tests/common/live_stack.py). Database reads run in a
helper thread: Playwright's sync API makes this thread count as inside an event loop.
"""

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from apps.marketdata import services as market_services
from apps.marketdata.models import Instrument
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.pipeline.features import DEFAULT_FEATURES
from apps.strategies.models import Deployment
from tests.common.live_db import transactional_db
from tests.common.live_stack import LiveServer, live_platform
from tests.e2e.test_backtests import read
from tests.e2e.test_dashboard_live import CHROMIUM, CHROMIUM_ARGS, pass_second_factor, sign_in
from tests.marketdata.ohlcv import load_candles

pytestmark = [pytest.mark.browser, transactional_db()]

BARS = 2500
STEP_TIMEOUT_MS = 15_000
TRAIN_TIMEOUT_MS = 90_000  # from "Train now" to the result (a cold worker imports scikit-learn)
SCREENSHOTS = Path("/tmp")
# Every "ml.*" websocket message the page receives, kept across the page's own reloads.
RECORD_ML_EVENTS = """
(() => {
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (message) => {
        try {
          const body = JSON.parse(message.data);
          if (!String(body.event).startsWith("ml.")) return;
          const seen = JSON.parse(sessionStorage.getItem("mlEvents") || "[]");
          seen.push(body);
          sessionStorage.setItem("mlEvents", JSON.stringify(seen));
        } catch (e) { /* not JSON: not ours */ }
      });
    }
  };
  window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    const where = `${e.sourceFile}:${e.lineNumber}`;
    window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${where})`);
  });
})();
"""


@pytest.fixture
def market(db: Any, tmp_path: Path) -> Instrument:
    """Real BTC/USDT 1h candles, imported as `make run` seeds them."""
    frame = load_candles("BTC-USDT_1h").iloc[-BARS:]
    frame.index = frame.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "BTC-USDT_1h.csv.gz"
    frame.to_csv(path, index_label="timestamp", compression="gzip")
    instrument = market_services.instrument_get_or_create(venue="binance", symbol="BTC/USDT", tick_size="0.01")
    assert market_services.candles_import_file(path=path, instrument=instrument, timeframe="1h").written == BARS
    return instrument


@pytest.fixture
def paper_account(alice: Any) -> Any:
    from apps.accounts.services import account_connect_paper

    return account_connect_paper(owner=alice, name="My paper", balances={"USDT": Decimal("20000")})


@pytest.fixture
def platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    with live_platform(monkeypatch) as server:
        yield server


@pytest.fixture
def page(
    market: Instrument, paper_account: Any, alice: Any, enable_2fa: Any, password: str, platform: LiveServer
) -> Iterator[Any]:
    """Alice signed in (password and second factor); started after every database fixture."""
    from playwright.sync_api import sync_playwright

    device = enable_2fa(alice)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=platform.url, viewport={"width": 1300, "height": 1000})
            context.set_default_timeout(STEP_TIMEOUT_MS)
            context.add_init_script(RECORD_ML_EVENTS)
            tab = context.new_page()
            sign_in(tab, alice.email, password)
            pass_second_factor(tab, device, platform.url)
            yield tab
            context.close()
        finally:
            browser.close()


def ml_events(page: Any) -> list[dict[str, Any]]:
    return json.loads(page.evaluate("sessionStorage.getItem('mlEvents') || '[]'"))


def no_csp_violations(page: Any, seen: list[str]) -> None:
    seen.extend(f"{page.url}: {v}" for v in page.evaluate("window.__cspViolations || []"))


def test_a_new_user_creates_trains_and_deploys_an_ml_strategy(
    page: Any, market: Instrument, paper_account: Any
) -> None:
    from playwright.sync_api import expect

    violations: list[str] = []

    # The menu leads to the ML strategies; there are none yet.
    page.get_by_role("link", name="ML", exact=True).click()
    expect(page.locator("#ml-strategies tr.empty")).to_be_visible()
    no_csp_violations(page, violations)
    page.locator("#new-ml-strategy").click()
    form = page.locator("#ml-form")
    expect(form).to_have_attribute("data-ready", "1")
    expect(page.locator("#id_timeframe")).to_have_value("1h")
    expect(page.locator("#id_instrument_ids option:checked")).to_have_text("BTC/USDT @ binance")

    # She fills the form: the default features plus all momentum ones, a small model.
    page.fill("#id_name", "BTC next 12 hours")
    momentum = page.locator("input.select-all[data-group=momentum]")
    momentum.check()
    for name in ("rsi_14", "macd_line", "macd_hist"):
        expect(page.locator(f"#feature-{name}")).to_be_checked()
    expect(page.locator("[data-field=label_threshold]")).to_be_visible()
    expect(page.locator("[data-field=label_stop]")).to_be_hidden()
    page.select_option("#id_model_kind", "hist_gb")
    expect(page.locator("#id_mp_hist_gb_max_iter")).to_be_visible()
    expect(page.locator("#id_mp_lightgbm_num_leaves")).to_be_hidden()
    page.fill("#id_mp_hist_gb_max_iter", "300")
    page.fill("#id_validation_n_splits", "5")
    page.fill("#id_validation_history_bars", "100")  # too little history
    page.locator("#id_schedule_every input[value=daily]").check()
    expect(page.locator("[data-field=schedule_time]")).to_be_visible()
    expect(page.locator("[data-field=schedule_cron]")).to_be_hidden()
    page.locator("#save-ml-strategy").click()

    # The form says where it is wrong and keeps everything she typed.
    expect(page.locator("[data-field=validation_history_bars].has-error .field-errors")).to_contain_text("500")
    expect(page.locator("#id_name")).to_have_value("BTC next 12 hours")
    expect(page.locator("#feature-macd_line")).to_be_checked()
    expect(page.locator("#id_mp_hist_gb_max_iter")).to_have_value("300")
    page.screenshot(path=str(SCREENSHOTS / "ml-form-error.png"), full_page=True)
    no_csp_violations(page, violations)
    assert read(lambda: MLStrategy.objects.count()) == 0
    page.fill("#id_validation_history_bars", str(BARS))
    page.locator("#save-ml-strategy").click()

    # Its page: not trained yet. She trains it and watches it live.
    page.wait_for_url("**/ml/*/")
    expect(page.locator("#training-result")).to_have_attribute("data-status", "none")
    ml = read(lambda: MLStrategy.objects.get())
    assert set(ml.features) == set(DEFAULT_FEATURES) | {"rsi_14", "macd_line", "macd_hist"}
    page.locator("#train-now").click()
    page.wait_for_url(f"**/ml/{ml.pk}/#training")
    expect(page.locator("#live-status")).to_have_text("live")
    expect(page.locator("#training")).to_be_visible()
    expect(page.locator("#training-result")).to_have_attribute("data-status", "promoted", timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("#result-reason")).to_contain_text("first trained model is promoted")
    version = read(lambda: ModelVersion.objects.defer("artifact").get(ml_strategy_id=ml.pk))
    assert version.status == "promoted" and version.number == 1
    expect(page.locator("#result-metrics dd[data-metric=auc]")).to_have_text(f"{version.metrics['auc']:.4f}")

    # The events came over the websocket: progress while it trained, then the result.
    events = ml_events(page)
    progress = [e["data"] for e in events if e["event"] == "ml.progress" and e["data"]["ml_strategy"] == ml.pk]
    results = [e["data"] for e in events if e["event"] == "ml.version" and e["data"]["ml_strategy"] == ml.pk]
    assert any(p["status"] == "running" and 0 < p["progress"] < 1 and p["stage"] for p in progress), progress
    assert [(r["number"], r["status"]) for r in results] == [(1, "promoted")]
    assert results[0]["metrics"]["auc"] == version.metrics["auc"]

    # The page reloads into the new version: table, importances, charts.
    expect(page.locator("#versions-table tr[data-version='1'][data-status=promoted]")).to_be_visible()
    assert page.locator("#importances li[data-feature]").count() == min(20, len(version.feature_importances))
    expect(page.locator("#equity-chart svg polyline")).to_have_count(1)
    expect(page.locator("#metrics-chart circle[data-series=auc]")).to_have_count(1)
    expect(page.locator("#promoted-badge")).to_have_text("v1 promoted")
    no_csp_violations(page, violations)
    page.screenshot(path=str(SCREENSHOTS / "ml-model.png"), full_page=True)

    # She deploys it on paper and lands on the deployment page.
    page.select_option("#id_account_id", str(paper_account.pk))
    page.fill("#id_capital", "5000")
    page.locator("#deploy-paper").click()
    page.wait_for_url("**/strategies/deployments/*/")
    deployment = read(lambda: Deployment.objects.get(owner_id=ml.owner_id))
    assert page.url.endswith(f"/strategies/deployments/{deployment.pk}/")
    assert (deployment.strategy_key, deployment.params, deployment.status) == (
        "ml",
        {"model": ml.pk, "version": 0},
        "paper",
    )
    expect(page.locator("main h1")).to_contain_text(deployment.name)
    page.screenshot(path=str(SCREENSHOTS / "ml-deployment.png"), full_page=True)

    # A label no bar can have (a 50 % rise within 12 hours): the training fails with the reason,
    # and the promoted version stays.
    page.goto(f"/ml/{ml.pk}/edit/")
    expect(page.locator("#ml-form")).to_have_attribute("data-ready", "1")
    page.fill("#id_label_threshold", "0.5")
    page.locator("#save-ml-strategy").click()
    page.wait_for_url(f"**/ml/{ml.pk}/")
    page.locator("#train-now").click()
    expect(page.locator("#training-result")).to_have_attribute("data-status", "failed", timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("#result-reason")).to_contain_text("label")
    expect(page.locator("#versions-table tr[data-version='2'][data-status=failed]")).to_be_visible()
    expect(page.locator("#versions-table tr[data-notes-for='2'] .error")).to_contain_text("label")
    expect(page.locator("#promoted-badge")).to_have_text("v1 promoted")
    failed = read(lambda: ModelVersion.objects.defer("artifact").get(ml_strategy_id=ml.pk, number=2))
    assert failed.status == "failed" and "label" in failed.error
    assert read(lambda: MLStrategy.objects.get(pk=ml.pk).promoted_version_id) == version.pk
    no_csp_violations(page, violations)
    page.screenshot(path=str(SCREENSHOTS / "ml-failed.png"), full_page=True)

    # The list shows it with its promoted version and last training.
    page.get_by_role("link", name="ML", exact=True).click()
    row = page.locator(f"#ml-strategies tr[data-ml-id='{ml.pk}']")
    expect(row).to_contain_text("v1")
    expect(row.locator(".last-training")).to_contain_text("Failed")
    no_csp_violations(page, violations)
    page.screenshot(path=str(SCREENSHOTS / "ml-list.png"), full_page=True)

    assert violations == []
