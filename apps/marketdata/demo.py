"""Demo markets for `make run` (called by the `seed_demo` command). Idempotent and quick.

Where the candles come from, first that applies:
1. `DEMO_FETCH_LIVE` (off by default; it needs the internet): the newest bars from the exchange's
   public OHLCV endpoint through ccxt, for the crypto pairs. Anything going wrong (no network,
   the exchange refusing) falls through to 2 or 3.
2. `DEMO_CANDLES_DIR` (the Makefile sets it to ../shared/data/ohlcv when that folder exists):
   real candles from its `<SYMBOL>_<tf>.csv.gz` files, the newest `MAX_FILE_BARS` of each,
   imported with `candles_import_file`.
3. Otherwise generated random walks, on instruments marked `is_synthetic` (the portal labels
   them "synthetic" wherever they are shown), ending at the current bar.

For BTC/USDT the higher timeframes are derived (`candles_derive`) so the chart offers
1m/5m/15m/1h/4h/1d: 15m from the 5m series, 4h and 1d from the 1h series (those stored series
reach further back than the 1m one; generated data derives everything from 1m).

A series that already holds bars is left alone, so a second run writes nothing. An instrument
that exists with the other `is_synthetic` flag is never mixed with these candles: real and
generated bars do not share a series.
"""

import collections
import gzip
import itertools
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings

from apps.marketdata import services, timeframes
from apps.marketdata.models import CandleSeries, Instrument
from apps.marketdata.storage import candles_write

logger = logging.getLogger(__name__)
Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoMarket:
    venue: str
    symbol: str
    asset_class: str
    timeframes: tuple[str, ...]
    tick_size: str
    lot_size: str
    min_notional: str | None
    start_price: float  # for generated candles
    annual_vol: float
    derive: tuple[tuple[str, str], ...] = ()  # (source, target) from files or the exchange
    synthetic_derive: tuple[str, ...] = ()  # generated: each derived from the one before, from the first
    synthetic_bars: int = 2000

    @property
    def file_stem(self) -> str:
        return self.symbol.replace("/", "-")


MARKETS: tuple[DemoMarket, ...] = (
    DemoMarket(
        "binance", "BTC/USDT", Instrument.AssetClass.CRYPTO, ("1m", "5m", "1h"), "0.01", "0.00001", "5",
        start_price=60_000.0, annual_vol=0.6, derive=(("5m", "15m"), ("1h", "4h"), ("1h", "1d")),
        synthetic_derive=("5m", "15m", "1h", "4h", "1d"), synthetic_bars=14 * 1440,
    ),
    DemoMarket("binance", "ETH/USDT", Instrument.AssetClass.CRYPTO, ("1h",), "0.01", "0.0001", "5",
               start_price=3_000.0, annual_vol=0.75),
    DemoMarket("demo", "SPY", Instrument.AssetClass.ETF, ("1d",), "0.01", "1", None,
               start_price=450.0, annual_vol=0.18, synthetic_bars=1500),
    DemoMarket("demo", "EUR/USD", Instrument.AssetClass.FOREX, ("1h",), "0.00001", "1000", None,
               start_price=1.08, annual_vol=0.07, synthetic_bars=3000),
)  # fmt: skip

SYNTHETIC_VENUE = "demo"
MAX_FILE_BARS = 20_000  # per file: the newest bars (SQLite in embedded mode writes ~15k bars/s)


def candles_dir() -> Path | None:
    raw = str(getattr(settings, "DEMO_CANDLES_DIR", "") or "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_absolute():
        path = Path(settings.BASE_DIR) / path
    return path if path.is_dir() else None


def _instrument(market: DemoMarket, *, venue: str, synthetic: bool) -> Instrument | None:
    instrument = services.instrument_get_or_create(
        venue=venue,
        symbol=market.symbol,
        asset_class=market.asset_class,
        tick_size=Decimal(market.tick_size),
        lot_size=Decimal(market.lot_size),
        min_notional=Decimal(market.min_notional) if market.min_notional else None,
        is_synthetic=synthetic,
    )
    return instrument if instrument.is_synthetic == synthetic else None


def _has_bars(instrument: Instrument, timeframe: str) -> bool:
    return CandleSeries.objects.filter(instrument=instrument, timeframe=timeframe, count__gt=0).exists()


def _derive(instrument: Instrument, pairs: tuple[tuple[str, str], ...], log: Log) -> None:
    for source, target in pairs:
        if _has_bars(instrument, source) and not _has_bars(instrument, target):
            written = services.candles_derive(instrument=instrument, source=source, target=target)
            log(f"  {instrument.symbol} {target}: {written} bars derived from {source}")


def _file_tail(path: Path, folder: Path, bars: int) -> Path:
    """The header and the newest `bars` rows of a sorted candle CSV(.gz), as a file in `folder`:
    SQLite stores ~15k candles a second, so the demo takes recent history, not all of it."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as source:
        header = source.readline()
        rows = collections.deque(source, maxlen=bars)
    tail = folder / path.name.removesuffix(".gz")
    tail.write_text(header + "".join(rows), encoding="utf-8")
    return tail


def seed_from_files(market: DemoMarket, folder: Path, log: Log) -> Instrument | None:
    files = {tf: folder / f"{market.file_stem}_{tf}.csv.gz" for tf in market.timeframes}
    files = {tf: path for tf, path in files.items() if path.exists()}
    if not files:
        return None
    instrument = _instrument(market, venue=market.venue, synthetic=False)
    if instrument is None:
        log(f"  {market.symbol} @ {market.venue} exists as synthetic; real candles not mixed in")
        return None
    for tf, path in files.items():
        if not _has_bars(instrument, tf):
            with tempfile.TemporaryDirectory() as tmp:
                tail = _file_tail(path, Path(tmp), MAX_FILE_BARS)
                result = services.candles_import_file(path=tail, instrument=instrument, timeframe=tf)
            log(f"  {market.symbol} {tf}: {result.written} bars from {path.name}")
    _derive(instrument, market.derive, log)
    return instrument


def _fetch_binance(symbol: str, timeframe: str, limit: int) -> pd.DataFrame:  # pragma: no cover - network
    """The newest `limit` closed bars from Binance's public endpoint (through the ccxt feed)."""
    from apps.marketdata.feeds.ccxt_feed import fetch_ohlcv_range

    since = datetime.now(tz=UTC) - timeframes.delta(timeframe) * (limit + 1)
    return fetch_ohlcv_range("binance", symbol, timeframe, since, retries=1)


Fetcher = Callable[[str, str, int], pd.DataFrame]


def seed_from_exchange(market: DemoMarket, log: Log, fetch: Fetcher = _fetch_binance) -> Instrument | None:
    """The newest 1000 closed bars of each timeframe from the exchange; None when not possible."""
    if market.venue != "binance":
        return None
    frames: dict[str, pd.DataFrame] = {}
    try:
        for tf in market.timeframes:
            frames[tf] = fetch(market.symbol, tf, 1000)
    except Exception as exc:  # any ccxt or network failure means: use the next source
        log(f"  {market.symbol}: live candles unavailable ({type(exc).__name__}); using the next source")
        return None
    instrument = _instrument(market, venue=market.venue, synthetic=False)
    if instrument is None:
        return None
    for tf, frame in frames.items():
        written = candles_write(instrument=instrument, timeframe=tf, frame=frame, source="backfill")
        log(f"  {market.symbol} {tf}: {written} bars from {market.venue}")
    _derive(instrument, market.derive, log)
    return instrument


def random_walk(
    *, bars: int, timeframe: str, start_price: float, annual_vol: float, tick: float, seed: int, end: datetime
) -> pd.DataFrame:
    """Geometric random walk of `bars` closed bars, the last one opening before `end`'s bar;
    prices on the tick grid, each bar opening at the previous close."""
    step = timeframes.seconds(timeframe)
    rng = np.random.default_rng(seed)
    sigma = annual_vol * np.sqrt(step / (365 * 86_400))
    returns = rng.normal(0.0, sigma, bars) + rng.normal(0.0, sigma * 0.02)  # a gentle drift
    close = start_price * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick_up = np.abs(rng.normal(0.0, sigma * 0.6, bars))
    wick_down = np.abs(rng.normal(0.0, sigma * 0.6, bars))
    high = np.maximum(open_, close) * np.exp(wick_up)
    low = np.minimum(open_, close) * np.exp(-wick_down)
    volume = rng.lognormal(mean=3.0, sigma=0.6, size=bars) * (1 + 40 * np.abs(returns) / max(sigma, 1e-12) / 10)

    def to_tick(values: np.ndarray) -> np.ndarray:
        return np.round(np.round(values / tick) * tick, 10)

    last_open = int(timeframes.floor(end, timeframe).timestamp()) - step
    index = pd.DatetimeIndex(pd.to_datetime(last_open - step * np.arange(bars)[::-1], unit="s", utc=True), name="ts")
    frame = pd.DataFrame(
        {"open": to_tick(open_), "high": to_tick(high), "low": to_tick(low), "close": to_tick(close), "volume": volume},
        index=index,
    )
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    return frame


def seed_synthetic(market: DemoMarket, log: Log, *, now: datetime | None = None) -> Instrument | None:
    instrument = _instrument(market, venue=SYNTHETIC_VENUE, synthetic=True)
    if instrument is None:
        log(f"  {market.symbol} @ {SYNTHETIC_VENUE} holds real candles; no synthetic ones added")
        return None
    base_tf = market.timeframes[0]
    if not _has_bars(instrument, base_tf):
        frame = random_walk(
            bars=market.synthetic_bars,
            timeframe=base_tf,
            start_price=market.start_price,
            annual_vol=market.annual_vol,
            tick=float(market.tick_size),
            seed=sum(map(ord, market.symbol)),
            end=now or datetime.now(tz=UTC),
        )
        written = candles_write(instrument=instrument, timeframe=base_tf, frame=frame, source="synthetic")
        log(f"  {market.symbol} {base_tf}: {written} synthetic bars")
    chain = (base_tf, *market.synthetic_derive)
    _derive(instrument, tuple(itertools.pairwise(chain)), log)
    return instrument


# The demo's live market: BTC/USDT 1m replayed onto venue "replay", a bar every few seconds.
REPLAY_VENUE = "replay"
REPLAY_TIMEFRAME = "1m"
REPLAY_SECONDS_PER_BAR = 3.0
# History copied at once when the replay starts: enough for the demo ML strategy to train on the
# replay market itself (apps.ml.demo: four walk-forward splits after a 250-bar warm-up).
REPLAY_PRELOAD_BARS = 6000
REPLAY_DERIVED = ("5m", "15m", "1h")


def demo_replay_start(source: Instrument, log: Log) -> Instrument | None:
    """Start replaying `source`'s 1m bars onto the same symbol at venue "replay", so the demo
    has a market whose newest candle moves (charts, and paper trading later). The first
    REPLAY_PRELOAD_BARS bars (at most half the source) are copied at once as history, with the
    higher timeframes derived from them; every later bar is stored, derived and announced like a live closed bar.
    A replay already running is left alone (it catches up after a restart)."""
    from apps.marketdata.feeds.replay import replay_start
    from apps.marketdata.models import Candle, ReplayCursor

    target = Instrument.objects.filter(venue=REPLAY_VENUE, symbol=source.symbol).first()
    if target is not None and ReplayCursor.objects.filter(target=target, is_active=True).exists():
        return target
    bars = Candle.objects.filter(instrument=source, timeframe=REPLAY_TIMEFRAME)
    preload = min(REPLAY_PRELOAD_BARS, bars.count() // 2)
    start = bars.order_by("ts").values_list("ts", flat=True)[preload : preload + 1].first()
    if start is None:
        log(f"  no {REPLAY_TIMEFRAME} bars of {source.symbol} to replay")
        return None
    if target is None:
        target = services.instrument_get_or_create(
            venue=REPLAY_VENUE,
            symbol=source.symbol,
            asset_class=source.asset_class,
            tick_size=source.tick_size,
            lot_size=source.lot_size,
            min_notional=source.min_notional,
            is_synthetic=source.is_synthetic,
        )
    replay_start(
        source=source,
        target=target,
        timeframe=REPLAY_TIMEFRAME,
        start=start,
        seconds_per_bar=REPLAY_SECONDS_PER_BAR,
        preload=preload,
        reset=True,
    )
    chain = (REPLAY_TIMEFRAME, *REPLAY_DERIVED)
    for lower, higher in itertools.pairwise(chain):
        services.candles_derive(instrument=target, source=lower, target=higher)
    log(
        f"  {source.symbol} @ {REPLAY_VENUE}: live replay of {source.venue} 1m, one bar every "
        f"{REPLAY_SECONDS_PER_BAR:g} s"
    )
    return target


def demo_seed(*, log: Log | None = None) -> list[Instrument]:
    """Seed the demo markets (see the module docstring for the sources). Returns the instruments."""
    say: Log = log or logger.info
    folder = candles_dir()
    fetch_live = bool(getattr(settings, "DEMO_FETCH_LIVE", False))
    source = "the exchange" if fetch_live else (str(folder) if folder else "generated (synthetic) data")
    say(f"Demo markets from {source}:")
    seeded: list[Instrument] = []
    for market in MARKETS:
        instrument = seed_from_exchange(market, say) if fetch_live else None
        if instrument is None and folder is not None:
            instrument = seed_from_files(market, folder, say)
        if instrument is None:
            instrument = seed_synthetic(market, say)
        if instrument is not None:
            seeded.append(instrument)
    btc = next((i for i in seeded if i.symbol == "BTC/USDT"), None)
    if btc is not None:
        replayed = demo_replay_start(btc, say)
        if replayed is not None:
            seeded.append(replayed)
    return seeded
