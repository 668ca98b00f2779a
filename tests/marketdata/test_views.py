"""Portal pages: the instrument list and the chart page."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from apps.marketdata.demo import random_walk
from apps.marketdata.models import Instrument
from apps.marketdata.services import instrument_get_or_create
from apps.marketdata.storage import candles_write

pytestmark = pytest.mark.django_db

VENDOR = Path(settings.BASE_DIR) / "static" / "vendor" / "lightweight-charts"


def _bars(timeframe: str, bars: int = 120) -> Any:
    return random_walk(
        bars=bars, timeframe=timeframe, start_price=50.0, annual_vol=0.4, tick=0.01, seed=1,
        end=datetime(2024, 1, 10, tzinfo=UTC),
    )  # fmt: skip


@pytest.fixture
def btc() -> Instrument:
    instrument = instrument_get_or_create(
        venue="binance", symbol="BTC/USDT", tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"),
        min_notional=Decimal("5"),
    )  # fmt: skip
    for tf in ("1m", "1h", "1d"):
        candles_write(instrument=instrument, timeframe=tf, frame=_bars(tf), source="import")
    return instrument


@pytest.fixture
def fake_spy() -> Instrument:
    instrument = instrument_get_or_create(
        venue="demo", symbol="SPY", asset_class=Instrument.AssetClass.ETF, lot_size=Decimal("1"), is_synthetic=True
    )
    candles_write(instrument=instrument, timeframe="1d", frame=_bars("1d"), source="synthetic")
    return instrument


@pytest.fixture
def signed_in(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_markets_pages_need_a_login(btc, web_client):
    for url in ("/markets/", f"/markets/{btc.pk}/"):
        response = web_client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_instrument_list_shows_contract_details_and_stored_timeframes(btc, fake_spy, signed_in):
    response = signed_in.get("/markets/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "BTC/USDT" in html and "binance" in html and "Crypto" in html
    assert ">0.01<" in html and ">0.00001<" in html and ">5<" in html
    for tf in ("1m", "1h", "1d"):
        assert f'href="/markets/{btc.pk}/?tf={tf}"' in html
    # The synthetic badge sits on SPY's row only.
    spy_row = html.split(f'data-instrument-id="{fake_spy.pk}"')[1].split("</tr>")[0]
    btc_row = html.split(f'data-instrument-id="{btc.pk}"')[1].split("</tr>")[0]
    assert "synthetic" in spy_row
    assert "synthetic" not in btc_row


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [("q=btc", "BTC/USDT", "SPY"), ("venue=demo", "SPY", "BTC/USDT"), ("asset_class=crypto", "BTC/USDT", "SPY")],
)
def test_instrument_list_filters(btc, fake_spy, signed_in, query, shown, hidden):
    html = signed_in.get(f"/markets/?{query}").content.decode()
    assert f">{shown}</a>" in html
    assert f">{hidden}</a>" not in html


def test_nav_links_to_markets(signed_in):
    assert 'href="/markets/">Markets</a>' in signed_in.get("/").content.decode()


def test_chart_page_renders_the_chart_shell(btc, signed_in):
    response = signed_in.get(f"/markets/{btc.pk}/?tf=1m")
    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["timeframe"] == "1m"
    assert response.context["chart_config"]["instrument"] == btc.pk
    assert response.context["chart_config"]["candlesUrl"] == f"/api/v1/instruments/{btc.pk}/candles/"
    assert 'id="chart"' in html and 'id="chart-config"' in html
    assert "vendor/lightweight-charts/lightweight-charts.standalone.production.js" in html
    assert "js/chart.js" in html and "js/live.js" in html
    assert 'id="live-status"' in html
    # Timeframe selector: the stored ones, shortest first, the current one marked.
    assert [s.timeframe for s in response.context["series"]] == ["1m", "1h", "1d"]
    assert 'data-tf="1m" class="tf active"' in html
    # Indicator picker and structure toggles.
    for spec in ("sma:20", "bbands:20:2", "ichimoku:9:26:52", "rsi:14", "macd:12:26:9", "obv"):
        assert f'value="{spec}"' in html
    for layer in ("sr", "trendlines", "zones", "fib"):
        assert f'class="structure-toggle" value="{layer}"' in html
    # TradingView's attribution notice and link.
    assert 'href="https://www.tradingview.com/"' in html
    assert "Copyright (c) 2023 TradingView, Inc." in html
    assert "badge synthetic" not in html and "Synthetic data" not in html


def test_chart_page_defaults_to_1h_and_ignores_a_timeframe_not_stored(btc, signed_in):
    assert signed_in.get(f"/markets/{btc.pk}/").context["timeframe"] == "1h"
    assert signed_in.get(f"/markets/{btc.pk}/?tf=4h").context["timeframe"] == "1h"
    assert signed_in.get(f"/markets/{btc.pk}/?tf=<script>").context["timeframe"] == "1h"


def test_chart_page_marks_synthetic_data(fake_spy, signed_in):
    response = signed_in.get(f"/markets/{fake_spy.pk}/")
    html = response.content.decode()
    assert response.context["timeframe"] == "1d"
    assert 'class="badge synthetic"' in html
    assert "Synthetic data" in html
    assert response.context["chart_config"]["isSynthetic"] is True


def test_chart_page_without_candles_says_so(signed_in):
    empty = instrument_get_or_create(venue="kraken", symbol="XBT/EUR")
    html = signed_in.get(f"/markets/{empty.pk}/").content.decode()
    assert "No candles are stored" in html
    assert "js/chart.js" not in html


def test_chart_page_of_unknown_instrument_is_404(signed_in):
    assert signed_in.get("/markets/987654/").status_code == 404


def test_lightweight_charts_is_vendored_with_its_license_and_notice():
    script = (VENDOR / "lightweight-charts.standalone.production.js").read_text()
    assert "TradingView Lightweight Charts" in script[:300]
    assert "Apache License" in (VENDOR / "LICENSE").read_text()
    assert "TradingView, Inc." in (VENDOR / "NOTICE").read_text()
    assert not (Path(settings.BASE_DIR) / "node_modules").exists()
