"""Walk-forward analysis: optimise on each train window, trade the best params on the test window
that follows, stitch the out-of-sample (OOS) equity, and measure how much of the in-sample (IS)
performance survives.

Windows (:func:`windows`): the first ``warmup`` bars are history only. The rest is cut into
``windows_count`` test windows of equal length, contiguous, non-overlapping and ending at the last
bar, each preceded by its train window. ``train_ratio`` is the share of train in each rolling
window (train / (train + test)); rolling train windows all have that one length and slide by a
test length; anchored train windows start at the first usable bar and grow (the first one has the
rolling length), with the same test windows.

Each train window is optimised alone (grid or TPE in memory, :func:`~.optimise.search`): the
strategies see up to their warm-up of bars before the window as indicator history, and never a bar
after it. The best params then run on the test window, again with their warm-up bars before it
(which are train bars: known at that time) and trades opened only inside it; a position still open
at the window's end is closed there. A window where no params are feasible stays out of the market
(flat OOS equity): that is what a trader following the procedure would have done.

Stitching: each window's run starts from the settings' cash; its equity is rescaled to start from
the previous window's final equity (``cash`` for the first), so the stitched curve compounds the
windows' returns. The stitched trades are scaled alike. Stitched metrics are the engine's
(:func:`apps.backtests.engine.metrics.compute_metrics`) over that curve and those trades.

Degradation (Pardo's walk-forward efficiency): each window's return is annualised linearly,
``total_return * bars_per_year / bars`` (compounding a few weeks' return to a year blows short
windows up to meaningless figures); walk-forward efficiency = the mean OOS annualised return / the
mean IS annualised return over the windows that traded, and the objective ratio = the mean OOS
objective / the mean IS objective. Both are None unless the IS figure is positive. Bars per year
follow the engine's convention (365 days; the settings' timeframe, else the candles' spacing).
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from apps.backtests.engine import EngineSettings, run_backtest
from apps.backtests.engine.fills import EXIT_REASONS, TRADE_COLUMNS
from apps.backtests.engine.metrics import (
    YEAR_SECONDS,
    bar_seconds_of,
    compute_metrics,
    drawdown_series,
    span_seconds_of,
)
from apps.backtests.engine.result import TRADE_FRAME_COLUMNS
from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.optimise import (
    GRID_LIMIT,
    TrialEvaluator,
    TrialResult,
    best_trial,
    engine_settings,
    objective_value,
    search,
)
from apps.backtests.research.segments import segment_strategy
from apps.backtests.research.space import dimension_values, space_build
from apps.marketdata.timeframes import TIMEFRAMES
from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError
from apps.strategies.params import Dimension
from apps.strategies.registry import strategy_class

MODES = ("rolling", "anchored")
MAX_WINDOWS = 50
MIN_WINDOW_BARS = 10
EQUITY_POINTS = 5_000
_WARMUP_PROBES = 20

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Window:
    """Positions in the candles, half-open: train ``[train_start, train_end)``, test
    ``[test_start, test_end)``, with ``test_start == train_end`` for rolling and anchored alike."""

    number: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    @property
    def train_bars(self) -> int:
        return self.train_end - self.train_start

    @property
    def test_bars(self) -> int:
        return self.test_end - self.test_start

    def as_dict(self, index: pd.DatetimeIndex) -> dict[str, Any]:
        """Bar counts and the open times of each range's first and last bar (ISO, UTC)."""
        return {
            "number": self.number,
            "train_from": index[self.train_start].isoformat(),
            "train_to": index[self.train_end - 1].isoformat(),
            "test_from": index[self.test_start].isoformat(),
            "test_to": index[self.test_end - 1].isoformat(),
            "train_bars": self.train_bars,
            "test_bars": self.test_bars,
        }


def windows(
    index: Sequence[Any] | pd.Index,
    *,
    mode: str = "rolling",
    windows_count: int = 5,
    train_ratio: float = 0.7,
    warmup: int = 0,
) -> list[Window]:
    """The train/test windows over ``index`` (see the module docstring). Raises
    ResearchInputError naming the field when the request cannot give every window at least
    :data:`MIN_WINDOW_BARS` train and test bars."""
    if mode not in MODES:
        raise ResearchInputError(f"Unknown mode '{mode}'; use one of {', '.join(MODES)}.", field="mode")
    if isinstance(windows_count, bool) or not isinstance(windows_count, int) or not 1 <= windows_count <= MAX_WINDOWS:
        raise ResearchInputError(
            f"windows_count must be a whole number from 1 to {MAX_WINDOWS}.", field="windows_count"
        )
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, int | float) or not 0 < train_ratio < 1:
        raise ResearchInputError("train_ratio must be between 0 and 1 (exclusive).", field="train_ratio")
    usable = len(index) - max(0, warmup)
    # train = test * r / (1 - r) and train + k * test = usable; rounding goes to the train part.
    test = math.floor(usable * (1 - train_ratio) / (windows_count * (1 - train_ratio) + train_ratio))
    train = usable - windows_count * test
    if test < MIN_WINDOW_BARS or train < MIN_WINDOW_BARS:
        raise ResearchInputError(
            f"{len(index):,} candles (after a warm-up of {max(0, warmup):,}) are too few for {windows_count} windows: "
            f"each needs at least {MIN_WINDOW_BARS} train and {MIN_WINDOW_BARS} test bars. "
            "Use fewer windows or a longer range.",
            field="windows_count",
        )
    first = max(0, warmup)
    result: list[Window] = []
    for number in range(windows_count):
        test_start = first + train + number * test
        train_start = first if mode == "anchored" else test_start - train
        result.append(Window(number, train_start, test_start, test_start, test_start + test))
    return result


@dataclass(frozen=True)
class WindowResult:
    window: Window
    best: TrialResult | None
    trials: int
    feasible_trials: int
    is_value: float | None
    is_metrics: dict[str, Any]
    oos_value: float | None
    oos_metrics: dict[str, Any]
    oos_equity: pd.Series
    oos_trades: pd.DataFrame
    is_annualised_return: float | None
    oos_annualised_return: float | None

    def as_dict(self, index: pd.DatetimeIndex) -> dict[str, Any]:
        return {
            **self.window.as_dict(index),
            "best_params": self.best.params if self.best is not None else None,
            "trials": self.trials,
            "feasible_trials": self.feasible_trials,
            "is_value": self.is_value,
            "oos_value": self.oos_value,
            "is_metrics": self.is_metrics,
            "oos_metrics": self.oos_metrics,
            "is_annualised_return": self.is_annualised_return,
            "oos_annualised_return": self.oos_annualised_return,
            "efficiency": _positive_ratio(self.oos_annualised_return, self.is_annualised_return),
        }


@dataclass(frozen=True)
class WalkForwardResult:
    mode: str
    method: str
    objective: str
    windows: list[WindowResult]
    equity: pd.Series
    drawdown: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, Any]
    degradation: dict[str, Any]
    index: pd.DatetimeIndex

    def as_dict(self, *, max_points: int = EQUITY_POINTS) -> dict[str, Any]:
        """JSON-safe (no NaN or infinity): windows with ISO times, stitched OOS metrics,
        degradation, and the stitched equity ``{t: [epoch ms], equity, drawdown}`` thinned to
        at most ``max_points`` points (the last always kept)."""
        picked = _thin(len(self.equity), max_points)
        times = pd.DatetimeIndex(self.equity.index[picked]).as_unit("ms").asi8
        return _json_safe(
            {
                "mode": self.mode,
                "method": self.method,
                "objective": self.objective,
                "windows": [w.as_dict(self.index) for w in self.windows],
                "metrics": self.metrics,
                "degradation": self.degradation,
                "equity": {
                    "t": times.tolist(),
                    "equity": self.equity.to_numpy()[picked].tolist(),
                    "drawdown": self.drawdown.to_numpy()[picked].tolist(),
                },
            }
        )


def walk_forward(
    *,
    strategy_key: str,
    candles: pd.DataFrame,
    settings: EngineSettings | Mapping[str, Any] | None = None,
    mode: str = "rolling",
    windows_count: int = 5,
    train_ratio: float = 0.7,
    method: str = "grid",
    objective: str = "sharpe",
    space: Mapping[str, Any] | None = None,
    min_trades: int = 1,
    n_trials: int = 50,
    seed: int | None = None,
    base_params: Mapping[str, Any] | None = None,
    grid_limit: int = GRID_LIMIT,
    progress: Progress | None = None,
) -> WalkForwardResult:
    """Run the whole walk-forward in this process (see the module docstring).

    ``base_params`` fix the parameters outside ``space``. TPE window ``i`` is seeded with
    ``seed + i``. ``progress(fraction)`` is called as trials finish. Raises ResearchInputError /
    the engine's InvalidSettingsError naming the field.
    """
    resolved = engine_settings(settings)
    objective_value({}, objective)
    cls = strategy_class(strategy_key)
    dims = space_build(cls.Params, space)
    cuts = windows(
        candles.index,
        mode=mode,
        windows_count=windows_count,
        train_ratio=train_ratio,
        warmup=_space_warmup(cls, dims, base_params or {}, timeframe=resolved.timeframe),
    )
    bar_seconds = _bar_seconds(candles, resolved)
    bars_per_year = YEAR_SECONDS / bar_seconds if bar_seconds else None
    results: list[WindowResult] = []
    for position, window in enumerate(cuts):

        def window_progress(fraction: float, position: int = position) -> None:
            if progress is not None:
                progress((position + 0.95 * fraction) / len(cuts))

        evaluate = TrialEvaluator(
            strategy_key=strategy_key,
            candles=candles,
            settings=resolved,
            objective=objective,
            min_trades=min_trades,
            base_params=base_params,
            start=window.train_start,
            end=window.train_end,
        )
        trials = search(
            evaluate,
            dims,
            method=method,
            n_trials=n_trials,
            seed=None if seed is None else seed + position,
            grid_limit=grid_limit,
            progress=window_progress,
        )
        results.append(_test_window(window, trials, evaluate, candles, resolved, objective, bars_per_year))
        if progress is not None:
            progress((position + 1) / len(cuts))
    equity, trades = _stitch(results, resolved.cash)
    metrics = _stitched_metrics(equity, trades, candles, cuts, resolved, results)
    return WalkForwardResult(
        mode=mode,
        method=method,
        objective=objective,
        windows=results,
        equity=equity,
        drawdown=pd.Series(drawdown_series(equity.to_numpy(), resolved.cash), index=equity.index, name="drawdown"),
        trades=trades,
        metrics=metrics,
        degradation=_degradation(results, metrics),
        index=pd.DatetimeIndex(candles.index),
    )


def walk_forward_warmup(
    *,
    strategy_key: str,
    space: Mapping[str, Any] | None = None,
    base_params: Mapping[str, Any] | None = None,
    timeframe: str | None = None,
) -> int:
    """The bars :func:`walk_forward` keeps as history before the first train window for this
    search (pass it as ``warmup`` to :func:`windows` to check a request before running it)."""
    cls = strategy_class(strategy_key)
    return _space_warmup(cls, space_build(cls.Params, space), base_params or {}, timeframe=timeframe)


def _space_warmup(
    cls: type[Strategy], dims: Sequence[Dimension], base: Mapping[str, Any], *, timeframe: str | None = None
) -> int:
    """The history to reserve before the first train window: the largest warm-up among the base
    params, every dimension at each end (or each choice) alone, and all at their highs together.
    An estimate (warm-up need not be monotonic in the params); each run still gets its own
    strategy's exact warm-up as lead-in wherever the bars exist. ``timeframe`` is the candles'
    bar size: strategies that look at a higher timeframe count their warm-up in base bars of it
    (unset, they assume the worst case of 1-minute bars)."""
    probes: list[dict[str, Any]] = [{}]
    highs: dict[str, Any] = {}
    for dim in dims:
        values = dimension_values(dim) if dim.kind in ("choice", "bool") else [dim.low, dim.high]
        if dim.kind == "int":
            values = [int(v) for v in values if v is not None]
        probes.extend({dim.name: value} for value in values[:_WARMUP_PROBES])
        highs[dim.name] = values[-1]
    probes.append(highs)
    warmups = [0]
    for probe in probes:
        try:
            strategy = cls({**base, **probe})
            strategy.timeframe = timeframe
            warmups.append(int(strategy.warmup()))
        except InvalidParamsError:
            continue
    return max(warmups)


def _test_window(
    window: Window,
    trials: list[TrialResult],
    evaluate: TrialEvaluator,
    candles: pd.DataFrame,
    settings: EngineSettings,
    objective: str,
    bars_per_year: float | None,
) -> WindowResult:
    best = best_trial(trials)
    test = candles.iloc[window.test_start : window.test_end]
    if best is None:
        equity = pd.Series(np.full(len(test), float(settings.cash)), index=test.index, name="equity")
        trades = pd.DataFrame(columns=list(TRADE_FRAME_COLUMNS))
        oos_metrics = _metrics(equity, trades, test, settings, skipped=0)
    else:
        strategy = evaluate.strategy(best.params)
        runner = segment_strategy(strategy, candles, window.test_start, window.test_end, strategy.warmup())
        run = run_backtest(runner, test, settings=settings)
        equity, trades, oos_metrics = run.equity, run.trades, run.metrics
    return WindowResult(
        window=window,
        best=best,
        trials=len(trials),
        feasible_trials=sum(1 for t in trials if t.is_feasible),
        is_value=best.value if best is not None else None,
        is_metrics=best.metrics if best is not None else {},
        oos_value=objective_value(oos_metrics, objective),
        oos_metrics=oos_metrics,
        oos_equity=equity,
        oos_trades=trades,
        is_annualised_return=_annualised(best.metrics if best else {}, window.train_bars, bars_per_year),
        oos_annualised_return=_annualised(oos_metrics, window.test_bars, bars_per_year) if best else None,
    )


def _annualised(metrics: Mapping[str, Any], bars: int, bars_per_year: float | None) -> float | None:
    total = metrics.get("total_return")
    if total is None or bars_per_year is None or bars <= 0:
        return None
    return float(total) * bars_per_year / bars


def _bar_seconds(candles: pd.DataFrame, settings: EngineSettings) -> float | None:
    if settings.timeframe:
        return float(TIMEFRAMES[settings.timeframe])
    return bar_seconds_of(pd.DatetimeIndex(candles.index))


def _stitch(results: Sequence[WindowResult], cash: float) -> tuple[pd.Series, pd.DataFrame]:
    level = float(cash)
    curves: list[pd.Series] = []
    trade_frames: list[pd.DataFrame] = []
    for result in results:
        scale = level / cash
        curve = result.oos_equity.astype(np.float64) * scale
        curves.append(curve)
        if len(result.oos_trades):
            trades = result.oos_trades.copy()
            for column in ("size", "fees", "pnl"):
                trades[column] = trades[column] * scale
            trades.insert(0, "window", result.window.number)
            trade_frames.append(trades)
        level = float(curve.iloc[-1])
    equity = pd.concat(curves).rename("equity")
    trades = pd.concat(trade_frames, ignore_index=True) if trade_frames else _empty_trades()
    return equity, trades


def _empty_trades() -> pd.DataFrame:
    return pd.DataFrame(columns=["window", *TRADE_FRAME_COLUMNS])


def _trades_matrix(trades: pd.DataFrame, index: pd.DatetimeIndex) -> np.ndarray:
    """The engine's trades matrix (:data:`TRADE_COLUMNS`) for trades on ``index``."""
    matrix = np.zeros((len(trades), len(TRADE_COLUMNS)))
    if len(trades):
        matrix[:, 0] = index.get_indexer(pd.DatetimeIndex(trades["entry_at"]))
        matrix[:, 1] = index.get_indexer(pd.DatetimeIndex(trades["exit_at"]))
        matrix[:, 2] = np.where(trades["side"].to_numpy() == "long", 1.0, -1.0)
        for position, column in enumerate(("entry_price", "exit_price", "size", "fees", "pnl"), start=3):
            matrix[:, position] = trades[column].to_numpy(dtype=np.float64)
        if "return_pct" in trades:
            matrix[:, 8] = trades["return_pct"].to_numpy(dtype=np.float64)
        if "exit_reason" in trades:
            matrix[:, 9] = [EXIT_REASONS.index(reason) for reason in trades["exit_reason"]]
    return matrix


def _metrics(
    equity: pd.Series, trades: pd.DataFrame, candles: pd.DataFrame, settings: EngineSettings, *, skipped: int
) -> dict[str, Any]:
    index = pd.DatetimeIndex(equity.index)
    closes = candles["close"]
    bar_seconds = _bar_seconds(candles, settings)
    return compute_metrics(
        equity=equity.to_numpy(dtype=np.float64),
        trades=_trades_matrix(trades, index),
        cash=float(settings.cash),
        first_close=float(closes.iloc[0]),
        last_close=float(closes.iloc[-1]),
        bar_seconds=bar_seconds,
        span_seconds=span_seconds_of(index, bar_seconds),
        skipped_orders=skipped,
    )


def _stitched_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    candles: pd.DataFrame,
    cuts: Sequence[Window],
    settings: EngineSettings,
    results: Sequence[WindowResult],
) -> dict[str, Any]:
    oos_candles = candles.iloc[cuts[0].test_start : cuts[-1].test_end]
    skipped = sum(int(r.oos_metrics.get("skipped_orders") or 0) for r in results)
    return _metrics(equity, trades, oos_candles, settings, skipped=skipped)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _positive_ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    ratio = numerator / denominator
    return ratio if math.isfinite(ratio) else None


def _degradation(results: Sequence[WindowResult], metrics: Mapping[str, Any]) -> dict[str, Any]:
    traded = [r for r in results if r.best is not None]
    is_return = _mean([r.is_annualised_return for r in traded])
    oos_return = _mean([r.oos_annualised_return for r in traded])
    is_objective = _mean([r.is_value for r in traded])
    oos_objective = _mean([r.oos_value for r in traded])
    profitable = [r for r in results if (r.oos_metrics.get("total_return") or 0.0) > 0]
    return {
        "oos_cagr": metrics.get("cagr"),
        "is_annualised_return": is_return,
        "oos_annualised_return": oos_return,
        "walk_forward_efficiency": _positive_ratio(oos_return, is_return),
        "is_objective": is_objective,
        "oos_objective": oos_objective,
        "objective_ratio": _positive_ratio(oos_objective, is_objective),
        "windows_traded": len(traded),
        "profitable_windows": len(profitable),
    }


def _thin(length: int, max_points: int) -> np.ndarray:
    if length <= max_points or max_points < 2:
        return np.arange(length)
    stride = math.ceil(length / (max_points - 1))
    picked = np.arange(0, length, stride)
    return picked if picked[-1] == length - 1 else np.append(picked, length - 1)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
