"""The feature catalogue and ``features_build``: what a model sees at each bar.

Every feature is scale-free (a return, a ratio to the close, an oscillator in [0, 1], a z-score,
a sine), so one model generalises across price levels and instruments. Row t is computed from
candles up to t only; the ``htf_<name>`` twins are the same feature on the higher timeframe,
resampled with :func:`apps.strategies.timeframes.higher_candles` and placed on the base bars
with :func:`~apps.strategies.timeframes.align_closed` (an HTF bar is used only once it has
closed).

Warm-up (:func:`features_warmup`): a deployment's tick computes features on a window of the
newest bars only, and its last row must equal the backtest's row for that bar *exactly* (a tree
splits on thresholds that are training values: a 1e-10 difference flips a split for a bar the
model was trained on). So every feature is a function of a bounded number of bars, ``settle``,
computed with the same arithmetic whatever came before:

- rolling features (returns, volatility, Bollinger bands, volume z-score) read their window only
  (Bollinger bands as ``ta.bbands`` defines them, computed per window instead of with running
  sums, whose rounding depends on where the series starts);
- the recursive indicators (RSI, MACD, ATR: Wilder / exponential smoothing, whose seed would
  otherwise count forever) and support / resistance (a stateful engine whose levels can live
  arbitrarily long) are computed in blocks: bars are grouped in blocks of ``_BLOCK`` bars
  aligned on the clock, and each block by a fresh run over the ``_CONTEXT`` bars before it plus
  the block itself. The value at a bar then depends on at most ``_CONTEXT + _BLOCK`` bars. The
  first blocks of the data, without their full context, run from the data's first bar: a window
  of ``settle`` bars holds such a block only when it starts at the data's first bar too, so the
  values still agree (and the early bars still give training samples). 150 bars of context take
  the smoothing seed's weight below 1e-4 (RSI 14: (13/14)^150), so the values are the
  indicators' to that precision. No active
  support / resistance level is NaN too (tree models handle that; the logistic model imputes).

An HTF feature settles after ``(settle + 1) * ratio`` base bars: its settle bars on the higher
timeframe plus the HTF bar in progress.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata import indicators as ta
from apps.marketdata import timeframes as market_timeframes
from apps.ml.pipeline.errors import MLInputError
from apps.strategies.timeframes import align_closed, higher_candles

HTF_PREFIX = "htf_"
HTF_GROUP = "Higher timeframe"
MAX_HTF_RATIO = 24
CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")

# Blocks of the recursive and structure features (see the module docstring).
_CONTEXT = 150
_BLOCK = 100
_BLOCK_SETTLE = _CONTEXT + _BLOCK
_RETURN_HORIZONS = (1, 3, 6, 12, 24, 48)
_VOLATILITY_WINDOWS = (12, 48)
_VOLUME_WINDOW = 48
_BB_PERIOD = 20


@dataclass(frozen=True)
class FeatureSpec:
    """One base feature. ``settle``: bars (of the timeframe it is computed on) after which a
    window's value equals the full history's. ``nullable``: NaN is a legitimate value after
    warm-up (no support level), so a row missing it is still complete."""

    name: str
    label: str
    group: str
    description: str
    settle: int
    nullable: bool = False
    has_htf: bool = True


def _specs() -> list[FeatureSpec]:
    specs = [
        FeatureSpec(
            f"ret_{n}",
            f"Return {n} bar{'s' if n > 1 else ''}",
            "Returns",
            f"Log return of the close over the last {n} bar{'s' if n > 1 else ''}.",
            n + 1,
        )
        for n in _RETURN_HORIZONS
    ]
    specs += [
        FeatureSpec(
            f"vol_{n}",
            f"Volatility {n}",
            "Volatility",
            f"Standard deviation of the 1-bar log returns over the last {n} bars.",
            n + 1,
        )
        for n in _VOLATILITY_WINDOWS
    ]
    specs += [
        FeatureSpec("rsi_14", "RSI 14", "Momentum", "Wilder RSI(14) / 100, in [0, 1].", _BLOCK_SETTLE),
        FeatureSpec("macd_line", "MACD line", "Momentum", "MACD(12, 26) line divided by the close.", _BLOCK_SETTLE),
        FeatureSpec(
            "macd_hist",
            "MACD histogram",
            "Momentum",
            "MACD(12, 26, 9) histogram (line - signal) divided by the close.",
            _BLOCK_SETTLE,
        ),
        FeatureSpec(
            "bb_pctb",
            "Bollinger %b",
            "Volatility",
            "Position of the close in the Bollinger bands (20, 2): 0 at the lower, 1 at the upper band.",
            _BB_PERIOD,
        ),
        FeatureSpec(
            "bb_width",
            "Bollinger width",
            "Volatility",
            "Bollinger band width (upper - lower) divided by the middle band.",
            _BB_PERIOD,
        ),
        FeatureSpec("atr_pct", "ATR %", "Volatility", "Wilder ATR(14) as a fraction of the close.", _BLOCK_SETTLE),
        FeatureSpec(
            "volume_z",
            "Volume z-score",
            "Volume",
            f"Volume minus its {_VOLUME_WINDOW}-bar mean, in standard deviations (0 when volume is constant).",
            _VOLUME_WINDOW,
        ),
        FeatureSpec(
            "dist_support",
            "Distance to support",
            "Structure",
            "(close - nearest support level) / close; empty when there is no active level.",
            _BLOCK_SETTLE,
            nullable=True,
        ),
        FeatureSpec(
            "dist_resistance",
            "Distance to resistance",
            "Structure",
            "(nearest resistance level - close) / close; empty when there is no active level.",
            _BLOCK_SETTLE,
            nullable=True,
        ),
    ]
    time_specs = [
        ("hour_sin", "Time of day (sin)", "sin(2 pi x time of day) of the bar's open time (UTC)."),
        ("hour_cos", "Time of day (cos)", "cos(2 pi x time of day) of the bar's open time (UTC)."),
        ("dow_sin", "Day of week (sin)", "sin(2 pi x position in the week, Monday 00:00 UTC = 0)."),
        ("dow_cos", "Day of week (cos)", "cos(2 pi x position in the week, Monday 00:00 UTC = 0)."),
    ]
    # A higher bar's time of day says nothing the base bar's does not: no HTF twins.
    specs += [FeatureSpec(name, label, "Time", text, 1, has_htf=False) for name, label, text in time_specs]
    return specs


BASE_FEATURES: dict[str, FeatureSpec] = {spec.name: spec for spec in _specs()}

DEFAULT_FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_3",
    "ret_12",
    "ret_48",
    "vol_12",
    "vol_48",
    "rsi_14",
    "macd_hist",
    "bb_pctb",
    "atr_pct",
    "volume_z",
    "hour_sin",
    "hour_cos",
)


def feature_catalogue() -> list[dict[str, object]]:
    """Every selectable feature: the base ones, then their ``htf_`` twins (``higher`` True)."""
    base = [
        {"name": s.name, "label": s.label, "group": s.group, "description": s.description, "higher": False}
        for s in BASE_FEATURES.values()
    ]
    twins = [
        {
            "name": HTF_PREFIX + s.name,
            "label": f"{s.label} (higher timeframe)",
            "group": HTF_GROUP,
            "description": f"{s.description} Computed on the higher timeframe's closed bars.",
            "higher": True,
        }
        for s in BASE_FEATURES.values()
        if s.has_htf
    ]
    return base + twins


def _base_name(name: str) -> tuple[str, bool]:
    if name.startswith(HTF_PREFIX):
        return name[len(HTF_PREFIX) :], True
    return name, False


def _spec(name: str) -> FeatureSpec | None:
    base, higher = _base_name(name)
    spec = BASE_FEATURES.get(base)
    if spec is None or (higher and not spec.has_htf):
        return None
    return spec


def is_nullable(name: str) -> bool:
    """Whether NaN is a legitimate value of ``name`` after its warm-up."""
    spec = _spec(name)
    return bool(spec and spec.nullable)


def timeframe_validate(timeframe: str, higher_timeframe: str) -> int:
    """The ratio higher / base (0 without a higher timeframe), or MLInputError naming the field."""
    if not isinstance(timeframe, str) or timeframe not in market_timeframes.TIMEFRAMES:
        raise MLInputError(
            f"Unknown timeframe {timeframe!r}; use one of {', '.join(market_timeframes.TIMEFRAMES)}.",
            field="timeframe",
        )
    if not higher_timeframe:
        return 0
    if not isinstance(higher_timeframe, str) or higher_timeframe not in market_timeframes.TIMEFRAMES:
        raise MLInputError(
            f"Unknown higher timeframe {higher_timeframe!r}; use one of {', '.join(market_timeframes.TIMEFRAMES)}.",
            field="higher_timeframe",
        )
    base, higher = market_timeframes.seconds(timeframe), market_timeframes.seconds(higher_timeframe)
    ratio, rest = divmod(higher, base)
    if rest or not 2 <= ratio <= MAX_HTF_RATIO:
        raise MLInputError(
            f"The higher timeframe must be 2 to {MAX_HTF_RATIO} {timeframe} bars long; "
            f"{higher_timeframe} is {higher / base:g} of them.",
            field="higher_timeframe",
        )
    return ratio


def features_validate(names: Iterable[str], *, timeframe: str, higher_timeframe: str = "") -> list[str]:
    """``names`` deduplicated in order, or MLInputError: ``features`` for an empty list, an
    unknown name or an ``htf_`` feature without a higher timeframe; ``timeframe`` /
    ``higher_timeframe`` for an unknown timeframe or a higher one that is not 2-24 base bars."""
    ratio = timeframe_validate(timeframe, higher_timeframe)
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise MLInputError("Features must be a list of feature names.", field="features")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or _spec(name) is None:
            raise MLInputError(f"Unknown feature {name!r}; choose names from the feature catalogue.", field="features")
        if name.startswith(HTF_PREFIX) and not ratio:
            raise MLInputError(
                f"The feature {name} needs a higher timeframe: choose one, or remove the htf_ features.",
                field="features",
            )
        if name not in out:
            out.append(name)
    if not out:
        raise MLInputError("Choose at least one feature.", field="features")
    return out


def features_warmup(names: Iterable[str], *, timeframe: str, higher_timeframe: str = "") -> int:
    """Bars after which every feature in ``names`` is defined and equal (bit for bit) to its
    value on the full history: the window a deployment's tick computes on."""
    names = features_validate(names, timeframe=timeframe, higher_timeframe=higher_timeframe)
    ratio = timeframe_validate(timeframe, higher_timeframe)
    warmup = 1
    for name in names:
        spec = _spec(name)
        assert spec is not None
        higher = name.startswith(HTF_PREFIX)
        warmup = max(warmup, (spec.settle + 1) * ratio if higher else spec.settle)
    return warmup


def features_build(
    candles: pd.DataFrame,
    names: Sequence[str],
    *,
    timeframe: str,
    higher_timeframe: str = "",
    start: int = 0,
) -> pd.DataFrame:
    """The features ``names`` on ``candles`` (sorted, indexed by aware-UTC open time): float64
    columns in ``names`` order on the candles' index, NaN in warm-up; row t from candles <= t.

    ``start``: rows before this position are NaN, and the rows from it are computed
    from the warm-up bars before them only (a tick needs only its newest rows): the same values
    as with ``start=0``.
    """
    names = features_validate(names, timeframe=timeframe, higher_timeframe=higher_timeframe)
    _check_candles(candles)
    base_names = {n for n in names if not n.startswith(HTF_PREFIX)}
    htf_names = {n[len(HTF_PREFIX) :] for n in names if n.startswith(HTF_PREFIX)}
    columns = _compute(candles, base_names, timeframe, start)
    if htf_names:
        higher = higher_candles(candles, higher_timeframe)
        htf_ns = market_timeframes.seconds(higher_timeframe) * 1_000_000_000
        higher_start = 0
        if start > 0 and len(higher) and len(candles):
            first_needed = pd.DatetimeIndex(candles.index).as_unit("ns").asi8[min(start, len(candles) - 1)]
            htf_end = pd.DatetimeIndex(higher.index).as_unit("ns").asi8 + htf_ns
            higher_start = max(int(np.searchsorted(htf_end, first_needed, side="right")) - 1, 0)
        htf_columns = _compute(higher, htf_names, higher_timeframe, higher_start)
        aligned = align_closed(pd.DataFrame(htf_columns, index=higher.index), higher_timeframe, candles.index)
        for name in htf_names:
            columns[HTF_PREFIX + name] = aligned[name].to_numpy()
    values = np.empty((len(candles), len(names)), dtype=np.float64)
    for position, name in enumerate(names):
        values[:, position] = columns[name]
    values[~np.isfinite(values)] = np.nan
    # Rows before `start` were computed from a truncated history, or not at all.
    values[: max(start, 0)] = np.nan
    return pd.DataFrame(values, index=candles.index, columns=list(names), copy=False)


def _check_candles(candles: pd.DataFrame) -> None:
    if not isinstance(candles, pd.DataFrame) or not isinstance(candles.index, pd.DatetimeIndex):
        raise MLInputError("Candles must be a DataFrame indexed by open time.", field="candles")
    missing = [c for c in CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise MLInputError(f"The candles lack the column(s) {', '.join(missing)}.", field="candles")
    if not candles.index.is_monotonic_increasing:
        raise MLInputError("The candles must be sorted by open time.", field="candles")


def _compute(candles: pd.DataFrame, names: set[str], timeframe: str, start: int) -> dict[str, np.ndarray]:
    """The base features ``names`` on ``candles`` (whatever their timeframe); rows from
    ``start`` on are computed from the ``settle`` bars before them only (the same values, by
    the definition of settle), which makes a tick's window cheap."""
    out: dict[str, np.ndarray] = {}
    if not names:
        return out
    offset = max(0, start - max(BASE_FEATURES[name].settle for name in names) + 1)
    if offset > 0:
        inner = _compute(candles.iloc[offset:], names, timeframe, start - offset)
        lead = np.full(offset, np.nan)
        return {name: np.concatenate([lead, values]) for name, values in inner.items()}
    close_s = candles["close"].astype(np.float64)
    close = close_s.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        log_close = np.log(close)
        for n in _RETURN_HORIZONS:
            if f"ret_{n}" in names:
                out[f"ret_{n}"] = _lagged_diff(log_close, n)
        if names & {f"vol_{n}" for n in _VOLATILITY_WINDOWS}:
            r1 = _lagged_diff(log_close, 1)
            for n in _VOLATILITY_WINDOWS:
                if f"vol_{n}" in names:
                    out[f"vol_{n}"] = _rolling_std(r1, n, ddof=1, start=start)
        recursive = names & _RECURSIVE
        if recursive:
            out.update(_blockwise(candles, timeframe, start, recursive, _recursive_features))
        if names & {"bb_pctb", "bb_width"}:
            out.update(_bollinger(close, _BB_PERIOD, 2.0, start))
        if "volume_z" in names:
            out["volume_z"] = _rolling_z(candles["volume"].to_numpy(dtype=np.float64), _VOLUME_WINDOW, start=start)
        structure = names & _STRUCTURE
        if structure:
            out.update(_blockwise(candles, timeframe, start, structure, _structure_features))
    if names & {"hour_sin", "hour_cos", "dow_sin", "dow_cos"}:
        out.update(_time_features(pd.DatetimeIndex(candles.index)))
    return {name: out[name] for name in names}


def _lagged_diff(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] > n:
        out[n:] = x[n:] - x[:-n]
    return out


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, n)


def _rolling_std(x: np.ndarray, n: int, *, ddof: int, start: int = 0) -> np.ndarray:
    """Standard deviation of each window of n values ending at a row (rows from ``start``),
    computed from that window alone (no running sums), so a window of the candles gives
    bit-identical values."""
    out = np.full(x.shape[0], np.nan)
    first = max(n - 1, start)
    if x.shape[0] > first:
        out[first:] = _windows(x[first - n + 1 :], n).std(axis=1, ddof=ddof)
    return out


def _rolling_z(x: np.ndarray, n: int, *, start: int = 0) -> np.ndarray:
    """(x - mean) / std (population) of each window of n values ending at a row, from ``start``."""
    out = np.full(x.shape[0], np.nan)
    first = max(n - 1, start)
    if x.shape[0] > first:
        windows = _windows(x[first - n + 1 :], n)
        mean = windows.mean(axis=1)
        std = windows.std(axis=1)
        # Constant volume (forex feeds report none) is no surprise: z = 0, not a division by 0.
        out[first:] = np.where(std > 0, (x[first:] - mean) / np.where(std > 0, std, 1.0), 0.0)
    return out


_RECURSIVE = frozenset({"rsi_14", "macd_line", "macd_hist", "atr_pct"})
_STRUCTURE = frozenset({"dist_support", "dist_resistance"})
BlockCompute = Callable[[pd.DataFrame, set[str]], dict[str, np.ndarray]]


def _blockwise(
    candles: pd.DataFrame, timeframe: str, start: int, names: set[str], compute: BlockCompute
) -> dict[str, np.ndarray]:
    """``compute`` run block by block (module docstring): rows of a block come from a run over
    the ``_CONTEXT`` bars before it (fewer at the data's start) and the block; blocks ending
    before ``start`` are skipped."""
    size = len(candles)
    out = {name: np.full(size, np.nan) for name in names}
    if size == 0:
        return out
    block_ns = _BLOCK * market_timeframes.seconds(timeframe) * 1_000_000_000
    block = pd.DatetimeIndex(candles.index).as_unit("ns").asi8 // block_ns
    starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    stops = np.r_[starts[1:], size]
    for first, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        if stop <= start:
            continue
        begin = max(first - _CONTEXT, 0)
        values = compute(candles.iloc[begin:stop], names)
        for name in names:
            out[name][first:stop] = values[name][first - begin :]
    return out


def _recursive_features(candles: pd.DataFrame, names: set[str]) -> dict[str, np.ndarray]:
    close_s = candles["close"]
    close = close_s.to_numpy(dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    if "rsi_14" in names:
        out["rsi_14"] = ta.rsi(close_s, 14).to_numpy() / 100.0
    if names & {"macd_line", "macd_hist"}:
        macd = ta.macd(close_s, 12, 26, 9)
        out["macd_line"] = macd["macd"].to_numpy() / close
        out["macd_hist"] = macd["hist"].to_numpy() / close
    if "atr_pct" in names:
        out["atr_pct"] = ta.atr(candles["high"], candles["low"], close_s, 14).to_numpy() / close
    return out


def _structure_features(candles: pd.DataFrame, names: set[str]) -> dict[str, np.ndarray]:
    close = candles["close"].to_numpy(dtype=np.float64)
    levels = ta.support_resistance(candles[list(CANDLE_COLUMNS)], lookback=_CONTEXT)
    return {
        "dist_support": (close - levels["support"].to_numpy()) / close,
        "dist_resistance": (levels["resistance"].to_numpy() - close) / close,
    }


def _bollinger(close: np.ndarray, n: int, k: float, start: int) -> dict[str, np.ndarray]:
    """%b and width of the Bollinger bands (``ta.bbands``: middle = mean of n closes, bands at
    +- k population standard deviations), each row from its own window."""
    pctb = np.full(close.shape[0], np.nan)
    width = np.full(close.shape[0], np.nan)
    first = max(n - 1, start)
    if close.shape[0] > first:
        windows = _windows(close[first - n + 1 :], n)
        middle = windows.mean(axis=1)
        spread = 2.0 * k * windows.std(axis=1)
        lower = middle - spread / 2.0
        # A flat window has no band: the close is in its middle.
        pctb[first:] = np.where(spread > 0, (close[first:] - lower) / np.where(spread > 0, spread, 1.0), 0.5)
        width[first:] = spread / middle
    return {"bb_pctb": pctb, "bb_width": width}


def _time_features(index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    seconds = index.as_unit("ns").asi8 // 1_000_000_000
    day = (seconds % 86_400) / 86_400.0
    # 1970-01-01 was a Thursday: shift so that Monday 00:00 UTC is 0.
    week = ((seconds + 3 * 86_400) % 604_800) / 604_800.0
    return {
        "hour_sin": np.sin(2 * np.pi * day),
        "hour_cos": np.cos(2 * np.pi * day),
        "dow_sin": np.sin(2 * np.pi * week),
        "dow_cos": np.cos(2 * np.pi * week),
    }
