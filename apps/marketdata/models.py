from django.db import models

from apps.common.models import TimeStampedModel
from apps.marketdata import timeframes


class Instrument(TimeStampedModel):
    """Something that trades on a venue: a ccxt market, a stock, a forex pair."""

    class AssetClass(models.TextChoices):
        CRYPTO = "crypto", "Crypto"
        EQUITY = "equity", "Equity"
        ETF = "etf", "ETF"
        FOREX = "forex", "Forex"
        FUTURE = "future", "Future"
        INDEX = "index", "Index"
        COMMODITY = "commodity", "Commodity"

    venue = models.CharField(max_length=40, help_text="ccxt exchange id (binance, kraken, …), 'ib', or 'demo'.")
    symbol = models.CharField(max_length=40, help_text="Unified symbol, e.g. BTC/USDT, AAPL, EUR/USD.")
    asset_class = models.CharField(max_length=16, choices=AssetClass.choices, default=AssetClass.CRYPTO)
    base = models.CharField(max_length=20, blank=True)
    quote = models.CharField(max_length=20, blank=True)
    tick_size = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    lot_size = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    min_notional = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    is_synthetic = models.BooleanField(
        default=False, help_text="Generated demo data, not a real market; labelled wherever shown."
    )

    class Meta:
        ordering = ["venue", "symbol"]
        constraints = [models.UniqueConstraint(fields=["venue", "symbol"], name="instrument_unique_venue_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol} @ {self.venue}"


class Candle(models.Model):
    """One OHLCV bar. `ts` is the bar's OPEN time (UTC). Prices are floats: candles feed
    analytics (indicators, backtests), never balances. Read them with
    `apps.marketdata.storage.candles_frame`, write them with `candles_write`.

    The primary key is the bar's identity (instrument, timeframe, open time): one index, which
    every read uses, and no surrogate id. The foreign key has no database constraint: a
    per-row constraint trigger would double the cost of bulk loads, and candles are only ever
    written through `candles_write` for an instrument that exists.
    """

    pk = models.CompositePrimaryKey("instrument", "timeframe", "ts")
    instrument = models.ForeignKey(
        Instrument, on_delete=models.CASCADE, related_name="candles", db_constraint=False, db_index=False
    )
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    ts = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.FloatField()

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.timeframe} {self.ts:%Y-%m-%d %H:%M}"


class CandleSeries(TimeStampedModel):
    """What is stored for one (instrument, timeframe): its range and where it came from.
    Backfill resumes from `last_ts`; the chart lists these."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="series")
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    first_ts = models.DateTimeField(null=True, blank=True)
    last_ts = models.DateTimeField(null=True, blank=True)
    count = models.BigIntegerField(default=0)
    source = models.CharField(max_length=40, blank=True, help_text="import, backfill, derived, replay, synthetic")
    is_live = models.BooleanField(
        default=False,
        help_text="Polled from the venue for newly closed bars (set while a deployment uses this series).",
    )

    class Meta:
        ordering = ["instrument", "timeframe"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "timeframe"], name="candleseries_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument} {self.timeframe}"


class ReplayCursor(TimeStampedModel):
    """A replay of stored history: bars of `source` are copied one by one into `target` at
    wall-clock speed and announced like live closed bars (see `feeds/replay.py`).

    Bar number k (0-based) of the replay is due at `anchor_at + (k + 1) * seconds_per_bar`;
    `next_ts` is the open time of the next source bar to copy and `bars_done` how many were
    copied.
    """

    source = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="replays_from")
    target = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="replays_into")
    timeframe = models.CharField(max_length=4, choices=timeframes.CHOICES)
    seconds_per_bar = models.FloatField(help_text="Wall-clock seconds between two replayed bars.")
    anchor_at = models.DateTimeField(help_text="When the replay started (re-anchored after a long stall).")
    next_ts = models.DateTimeField(help_text="Open time of the next source bar to copy.")
    bars_done = models.BigIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["target", "timeframe"]
        constraints = [
            models.UniqueConstraint(fields=["target", "timeframe"], name="replaycursor_unique_target"),
            models.CheckConstraint(condition=models.Q(seconds_per_bar__gt=0), name="replaycursor_speed_positive"),
        ]

    def __str__(self) -> str:
        return f"replay {self.source} -> {self.target} {self.timeframe}"
