"""Receivers of the strategies app, connected in StrategiesConfig.ready().

Market data announces each closed candle (`apps.marketdata.signals.candle_closed`, after
commit); the tick service lets the paper venue match the bar and queues one tick per running
deployment on that series.
"""

from datetime import datetime
from typing import Any

from apps.strategies.services import ticks


def on_candle_closed(sender: Any, *, instrument_id: int, timeframe: str, ts: datetime, **kwargs: Any) -> None:
    ticks.deployments_tick_enqueue(instrument_id=instrument_id, timeframe=timeframe, ts=ts)
