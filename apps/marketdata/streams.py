"""The `candles` websocket stream: closed bars of one (instrument, timeframe) series."""

from typing import Any

from apps.common.streams import StreamRefused
from apps.marketdata import timeframes
from apps.marketdata.models import Instrument


def market_group(instrument_id: int, timeframe: str) -> str:
    return f"market.{instrument_id}.{timeframe}"


def resolve_candles_stream(params: dict[str, Any], user: Any) -> str:
    """Market data is public to signed-in users; the parameters must name a real series."""
    timeframe = params.get("timeframe")
    if not isinstance(timeframe, str) or timeframe not in timeframes.TIMEFRAMES:
        raise StreamRefused(f"Unknown timeframe {timeframe!r}.", code="invalid")
    try:
        instrument_id = int(params.get("instrument"))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise StreamRefused("instrument must be an instrument id.", code="invalid") from None
    if not 0 < instrument_id < 2**63:
        raise StreamRefused(f"No instrument {instrument_id}.", code="not_found")
    if not Instrument.objects.filter(pk=instrument_id, is_active=True).exists():
        raise StreamRefused(f"No instrument {instrument_id}.", code="not_found")
    return market_group(instrument_id, timeframe)
