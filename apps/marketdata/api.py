"""Market-data API: instruments, candle windows with indicators, and price structure for charts.

    GET /api/v1/instruments/                       ?venue=&asset_class=&search=&limit=&offset=
    GET /api/v1/instruments/{id}/                  with its stored series (timeframe, range, count)
    GET /api/v1/instruments/{id}/candles/          ?timeframe=1h&start=&end=&limit=&indicators=
    GET /api/v1/instruments/{id}/structure/        ?timeframe=1h&kinds=sr,trendlines,zones,fib&at=&bars=

Candles are public market data, but like the rest of the API these need a token or a session
verified with the second factor. Times in: ISO-8601 (naive = UTC) or epoch seconds (values of
1e11 and more are taken as milliseconds). Times out: epoch seconds of the bar's open (what the
chart library wants) in candle windows, ISO-8601 in instrument descriptions.
"""

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.errors import NotFound
from apps.marketdata import chart_indicators, selectors, timeframes
from apps.marketdata.indicators import structure
from apps.marketdata.models import CandleSeries, Instrument

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
DEFAULT_STRUCTURE_BARS = 1000
MIN_STRUCTURE_BARS = 50
STRUCTURE_KINDS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "sr": structure.support_resistance_levels,
    "trendlines": structure.trendline_lines,
    "zones": structure.supply_demand_zone_boxes,
    "fib": structure.fibonacci_levels,
    "pivots": structure.pivot_points,
    "confluence": structure.confluence_levels,
}
DEFAULT_KINDS = "sr,trendlines,zones,fib"
_TIMEFRAME_ERRORS: dict[str, Any] = {
    "invalid_choice": f'Unknown timeframe "{{input}}"; use one of {", ".join(timeframes.TIMEFRAMES)}.'
}


# --- input --------------------------------------------------------------------------------------


def parse_when(raw: str) -> datetime:
    """ISO-8601 date or datetime (naive = UTC), or epoch seconds (>= 1e11: milliseconds)."""
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(text)
        if abs(number) >= 1e11:
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=UTC)
    parsed = parse_datetime(text)
    if parsed is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(text)
        parsed = datetime(day.year, day.month, day.day)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@extend_schema_field(OpenApiTypes.STR)
class WhenField(serializers.Field):
    default_error_messages = {"invalid": "Use an ISO-8601 date/time (UTC) or epoch seconds, not {input!r}."}

    def to_internal_value(self, data: Any) -> datetime:
        try:
            return parse_when(str(data))
        except (ValueError, OverflowError, OSError):
            self.fail("invalid", input=str(data)[:40])
            raise  # unreachable: fail() raises

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class InstrumentListQuerySerializer(serializers.Serializer[Any]):
    venue = serializers.CharField(required=False, help_text="Exact venue id, e.g. binance.")
    asset_class = serializers.ChoiceField(choices=Instrument.AssetClass.choices, required=False)
    search = serializers.CharField(required=False, help_text="Part of the symbol, or a base/quote/venue.")


class _TimeframeQuery(serializers.Serializer[Any]):
    timeframe = serializers.ChoiceField(choices=list(timeframes.TIMEFRAMES), error_messages=_TIMEFRAME_ERRORS)


class CandlesQuerySerializer(_TimeframeQuery):
    start = WhenField(required=False, help_text="First bar's open time (inclusive). ISO-8601 or epoch seconds.")
    end = WhenField(required=False, help_text="Bars opening before this (exclusive). ISO-8601 or epoch seconds.")
    limit = serializers.IntegerField(
        required=False,
        default=DEFAULT_LIMIT,
        min_value=1,
        max_value=MAX_LIMIT,
        help_text="At most this many bars: the oldest from `start`, else the newest before `end`.",
    )
    indicators = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Comma-separated `name[:param...]`, e.g. `sma:20,ema:50,rsi:14,bbands:20:2,macd:12:26:9`. "
        f"Known: {', '.join(chart_indicators.REGISTRY)}.",
    )

    def validate_indicators(self, value: str) -> list[chart_indicators.IndicatorSpec]:
        try:
            return chart_indicators.parse(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("start"), attrs.get("end")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"start": "start must be before end."})
        return attrs


class StructureQuerySerializer(_TimeframeQuery):
    kinds = serializers.CharField(
        required=False, default=DEFAULT_KINDS, help_text=f"Comma-separated: {', '.join(STRUCTURE_KINDS)}."
    )
    at = WhenField(required=False, help_text="As of the bar opening at or before this time (default: the newest).")
    bars = serializers.IntegerField(
        required=False,
        default=DEFAULT_STRUCTURE_BARS,
        min_value=MIN_STRUCTURE_BARS,
        max_value=MAX_LIMIT,
        help_text="How many bars up to `at` the engines read.",
    )

    def validate_kinds(self, value: str) -> list[str]:
        kinds = list(dict.fromkeys(k.strip().lower() for k in value.split(",") if k.strip()))
        unknown = [k for k in kinds if k not in STRUCTURE_KINDS]
        if unknown or not kinds:
            raise serializers.ValidationError(
                f"Unknown kind(s) {', '.join(unknown) or '(none given)'}; use {', '.join(STRUCTURE_KINDS)}."
            )
        return kinds


# --- output -------------------------------------------------------------------------------------


class SeriesSerializer(serializers.ModelSerializer[CandleSeries]):
    class Meta:
        model = CandleSeries
        fields = ["timeframe", "first_ts", "last_ts", "count", "source"]
        read_only_fields = fields


class InstrumentSerializer(serializers.ModelSerializer[Instrument]):
    timeframes = serializers.SerializerMethodField(help_text="Stored timeframes, shortest first.")

    class Meta:
        model = Instrument
        fields = [
            "id",
            "venue",
            "symbol",
            "asset_class",
            "base",
            "quote",
            "tick_size",
            "lot_size",
            "min_notional",
            "is_active",
            "is_synthetic",
            "timeframes",
        ]
        read_only_fields = fields

    def get_timeframes(self, obj: Instrument) -> list[str]:
        return selectors.stored_timeframes(instrument=obj)


class InstrumentDetailSerializer(InstrumentSerializer):
    series = serializers.SerializerMethodField()

    class Meta(InstrumentSerializer.Meta):
        fields = [*InstrumentSerializer.Meta.fields, "series"]
        read_only_fields = fields

    @extend_schema_field(SeriesSerializer(many=True))
    def get_series(self, obj: Instrument) -> list[dict[str, Any]]:
        return list(SeriesSerializer(selectors.series_list_for_instrument(instrument=obj), many=True).data)


class InstrumentRefSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    venue = serializers.CharField()
    symbol = serializers.CharField()
    is_synthetic = serializers.BooleanField()


class BarSerializer(serializers.Serializer[Any]):
    t = serializers.IntegerField(help_text="Open time, epoch seconds (UTC).")
    o = serializers.FloatField()
    h = serializers.FloatField()
    l = serializers.FloatField()  # noqa: E741
    c = serializers.FloatField()
    v = serializers.FloatField()


class IndicatorResultSerializer(serializers.Serializer[Any]):
    name = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    pane = serializers.ChoiceField(choices=["price", "own"], help_text="price: over the candles; own: a sub-pane.")
    params = serializers.DictField()
    series = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Column name -> one value per returned candle (null during warm-up).",
    )


class CandlesResponseSerializer(serializers.Serializer[Any]):
    instrument = InstrumentRefSerializer()
    timeframe = serializers.CharField()
    count = serializers.IntegerField()
    has_older = serializers.BooleanField(help_text="Bars exist before the first one returned.")
    has_newer = serializers.BooleanField(help_text="Bars exist after the last one returned (within no `end`).")
    candles = BarSerializer(many=True)
    indicators = serializers.DictField(child=IndicatorResultSerializer(), help_text="Keyed by the spec as given.")


class StructureResponseSerializer(serializers.Serializer[Any]):
    instrument = InstrumentRefSerializer()
    timeframe = serializers.CharField()
    at = serializers.IntegerField(allow_null=True, help_text="The bar the objects are as of (epoch seconds).")
    bars = serializers.IntegerField(help_text="Bars the engines read (ending at `at`).")
    start = serializers.IntegerField(allow_null=True, help_text="First bar read (epoch seconds).")
    sr = serializers.ListField(child=serializers.DictField(), required=False, help_text="support_resistance_levels")
    trendlines = serializers.ListField(child=serializers.DictField(), required=False, help_text="trendline_lines")
    zones = serializers.ListField(child=serializers.DictField(), required=False, help_text="supply_demand_zone_boxes")
    fib = serializers.ListField(child=serializers.DictField(), required=False, help_text="fibonacci_levels")
    pivots = serializers.ListField(child=serializers.DictField(), required=False, help_text="pivot_points")
    confluence = serializers.ListField(child=serializers.DictField(), required=False, help_text="confluence_levels")


def _epoch(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000_000)


def _plain(value: Any) -> Any:
    """A lister's value as JSON: timestamps -> epoch seconds, NaN -> null, NumPy -> Python."""
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else _epoch(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # NumPy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _instrument_or_404(instrument_id: int) -> Instrument:
    instrument = selectors.instrument_get(instrument_id=instrument_id)
    if instrument is None:
        raise NotFound("No such instrument.")
    return instrument


def _ref(instrument: Instrument) -> dict[str, Any]:
    return {
        "id": instrument.pk,
        "venue": instrument.venue,
        "symbol": instrument.symbol,
        "is_synthetic": instrument.is_synthetic,
    }


# --- views --------------------------------------------------------------------------------------


class InstrumentListApi(generics.ListAPIView[Instrument]):
    serializer_class = InstrumentSerializer

    def get_queryset(self) -> QuerySet[Instrument]:
        query = InstrumentListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.instrument_list(filters=query.validated_data)

    @extend_schema(parameters=[InstrumentListQuerySerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class InstrumentDetailApi(APIView):
    @extend_schema(responses=InstrumentDetailSerializer)
    def get(self, request: Request, instrument_id: int) -> Response:
        return Response(InstrumentDetailSerializer(_instrument_or_404(instrument_id)).data)


def candles_payload(
    *, instrument: Instrument, timeframe: str, window: selectors.CandleWindow, specs: list[Any]
) -> dict[str, Any]:
    shown = window.window
    times = (shown.index.as_unit("s").asi8).tolist()
    columns = [shown[c].to_numpy().tolist() for c in ("open", "high", "low", "close", "volume")]
    candles = [
        {"t": t, "o": o, "h": h, "l": low, "c": c, "v": v} for t, o, h, low, c, v in zip(times, *columns, strict=True)
    ]
    return {
        "instrument": _ref(instrument),
        "timeframe": timeframe,
        "count": len(candles),
        "has_older": window.has_older,
        "has_newer": window.has_newer,
        "candles": candles,
        "indicators": chart_indicators.compute(window.frame, specs, keep_last=window.shown),
    }


class InstrumentCandlesApi(APIView):
    @extend_schema(parameters=[CandlesQuerySerializer], responses=CandlesResponseSerializer)
    def get(self, request: Request, instrument_id: int) -> Response:
        instrument = _instrument_or_404(instrument_id)
        query = CandlesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        specs = q["indicators"]
        window = selectors.candle_window(
            instrument=instrument,
            timeframe=q["timeframe"],
            start=q.get("start"),
            end=q.get("end"),
            limit=q["limit"],
            warmup=chart_indicators.warmup_bars(specs, timeframes.seconds(q["timeframe"])),
        )
        return Response(candles_payload(instrument=instrument, timeframe=q["timeframe"], window=window, specs=specs))


def structure_payload(
    *, instrument: Instrument, timeframe: str, candles: pd.DataFrame, kinds: list[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "instrument": _ref(instrument),
        "timeframe": timeframe,
        "at": _epoch(candles.index[-1]) if len(candles) else None,
        "bars": len(candles),
        "start": _epoch(candles.index[0]) if len(candles) else None,
    }
    for kind in kinds:
        body[kind] = _plain(STRUCTURE_KINDS[kind](candles)) if len(candles) else []
    return body


class InstrumentStructureApi(APIView):
    @extend_schema(parameters=[StructureQuerySerializer], responses=StructureResponseSerializer)
    def get(self, request: Request, instrument_id: int) -> Response:
        instrument = _instrument_or_404(instrument_id)
        query = StructureQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        candles = selectors.structure_window(
            instrument=instrument, timeframe=q["timeframe"], at=q.get("at"), bars=q["bars"]
        )
        return Response(
            structure_payload(instrument=instrument, timeframe=q["timeframe"], candles=candles, kinds=q["kinds"])
        )
