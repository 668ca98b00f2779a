"""Domain signals of the market-data app (sent after commit).

`candle_closed(instrument_id, timeframe, ts)`: a bar of that series has closed and is stored.
Strategy ticks connect to it (issue: live trading); the chart's live update uses it too.
"""

from django.dispatch import Signal

candle_closed = Signal()
