"""Portal pages of the market-data app: the instrument list and the chart page.

The chart page is a shell: static/js/chart.js draws it from the API (candles, indicators,
structure) and keeps the newest bar live over the page's websocket.
"""

from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.marketdata import chart_indicators, selectors
from apps.marketdata.models import Instrument

PAGE_SIZE = 50
# What the indicator picker offers, with the parameters it starts with.
PICKER_OVERLAYS = ["sma:20", "sma:50", "ema:20", "ema:200", "wma:20", "bbands:20:2", "donchian:20", "keltner:20:10:2",
                   "supertrend:10:3", "vwap:D", "ichimoku:9:26:52"]  # fmt: skip
PICKER_PANES = ["rsi:14", "macd:12:26:9", "stoch:14:3:3", "atr:14", "adx:14", "cci:20", "obv", "mfi:14"]
STRUCTURE_LAYERS = [("sr", "Support / resistance"), ("trendlines", "Trendlines"), ("zones", "Supply / demand"),
                    ("fib", "Fibonacci")]  # fmt: skip


def _picker(specs: list[str]) -> list[dict[str, str]]:
    items = []
    for text in specs:
        spec = chart_indicators.parse_one(text)
        params = " ".join(str(v) for v in spec.params.values())
        items.append({"spec": text, "label": f"{spec.definition.label} {params}".strip()})
    return items


def _plain_decimal(value: Decimal | None) -> str:
    """0.0100000000 -> 0.01, 1000.0000000000 -> 1000."""
    return "" if value is None else f"{value.normalize():f}"


@login_required
def instrument_list(request: HttpRequest) -> HttpResponse:
    filters = {
        # A NUL byte cannot reach PostgreSQL in a query parameter: drop it.
        "venue": request.GET.get("venue", "").replace("\x00", ""),
        "asset_class": request.GET.get("asset_class", "").replace("\x00", ""),
        "search": request.GET.get("q", "").replace("\x00", ""),
    }
    page = Paginator(selectors.instrument_list(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {
            "instrument": instrument,
            "timeframes": selectors.stored_timeframes(instrument=instrument),
            "tick_size": _plain_decimal(instrument.tick_size),
            "lot_size": _plain_decimal(instrument.lot_size),
            "min_notional": _plain_decimal(instrument.min_notional),
        }
        for instrument in page
    ]
    return render(
        request,
        "marketdata/instrument_list.html",
        {
            "page": page,
            "rows": rows,
            "filters": filters,
            "venues": selectors.venue_list(),
            "asset_classes": Instrument.AssetClass.choices,
        },
    )


@login_required
def instrument_chart(request: HttpRequest, instrument_id: int) -> HttpResponse:
    instrument = selectors.instrument_get(instrument_id=instrument_id)
    if instrument is None:
        raise Http404("No such instrument.")
    stored = selectors.stored_timeframes(instrument=instrument)
    timeframe = request.GET.get("tf") or ""
    if timeframe not in stored:
        timeframe = selectors.default_timeframe(instrument=instrument) or ""
    config: dict[str, Any] = {
        "instrument": instrument.pk,
        "symbol": instrument.symbol,
        "timeframe": timeframe,
        "isSynthetic": instrument.is_synthetic,
        "tickSize": float(instrument.tick_size) if instrument.tick_size else None,
        "candlesUrl": f"/api/v1/instruments/{instrument.pk}/candles/",
        "structureUrl": f"/api/v1/instruments/{instrument.pk}/structure/",
        "limit": 1500,
        "structureBars": 1000,
    }
    return render(
        request,
        "marketdata/chart.html",
        {
            "instrument": instrument,
            "series": selectors.series_list_for_instrument(instrument=instrument),
            "timeframe": timeframe,
            "overlays": _picker(PICKER_OVERLAYS),
            "panes": _picker(PICKER_PANES),
            "structure_layers": STRUCTURE_LAYERS,
            "chart_config": config,
        },
    )
