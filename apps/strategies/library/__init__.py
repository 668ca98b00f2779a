"""The pre-built strategies. Every module here not starting with ``_`` is imported by the registry
at start-up and registers its classes; operators add code strategies the same way.

- moving_average: sma_cross, ema_cross
- oscillators: rsi_mean_reversion, macd_momentum, dual_momentum (EMA + RSI + MACD)
- bands: bollinger_bounce, donchian_breakout (Donchian or support/resistance), vwap_reversion
- intraday: opening_range_breakout
- structure: trendline_bounce, supply_demand_zone, fibonacci_retracement, multi_confluence
- composite: composite (a weighted vote over the simpler ones)
- htf_trend_filter: htf_trend_filter (any of the above, entering only with the higher-timeframe trend)

Conventions shared by all of them (helpers in ``_signals``): every strategy is long-only unless
its ``short`` parameter is on; crosses are TradingView's (``a[t] > b[t]`` and ``a[t-1] <= b[t-1]``);
nothing fires while an indicator is still NaN; ``stop_price`` / ``target_price`` are set on entry
bars only (the engine reads them there); ``warmup()`` counts the bars the indicators need, three
periods for exponential / Wilder averages so that their seed is forgotten.
"""
