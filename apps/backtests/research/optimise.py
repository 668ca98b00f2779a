"""Parameter optimisation: grid and Optuna TPE over a strategy's Params bounds.

Pure (no Django). The platform's Celery tasks call these in chunks:

- grid: :func:`grid_points` enumerates the combinations once; each task evaluates a slice of them
  with :func:`trials_evaluate` (numbered globally through ``first_number``).
- TPE: :func:`study_create` makes one Optuna study in the database (an SQLAlchemy URL, see
  :func:`sqlalchemy_url`); each task calls :func:`trials_run` on it, which loads the study and runs
  ``n_trials`` ask / evaluate / tell cycles. Workers on several machines share the study, so each
  one's sampler learns from everyone's trials. Per chunk the sampler is seeded from the study's
  seed and the ``chunk`` number: one worker running chunks 0, 1, 2... reproduces; parallel workers
  are not reproducible between runs by nature (they see each other's trials in racing order).

Every trial is scored with the engine's fast path (``backtest_metrics``) and an objective
(:data:`OBJECTIVES`, all maximised). A trial is *feasible* when its objective is defined and it made
at least ``min_trades`` trades. Infeasible trials (too few trades, an undefined objective, params
the strategy's own rules refuse, a strategy that raised on these params) get value None; in an
Optuna study they are told as PRUNED, which TPE ranks below every complete trial (so it steers away
from them) and which never becomes the study's best. A trial whose evaluation crashed with an
unexpected error is told as FAIL and the error propagates.
"""

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from apps.backtests.engine import EngineSettings, backtest_metrics
from apps.backtests.research.errors import ResearchInputError
from apps.backtests.research.segments import segment_strategy
from apps.backtests.research.space import grid_points, space_build
from apps.backtests.research.studies import sqlalchemy_url, storage_dispose, storage_open, study_create, study_delete
from apps.strategies.base import Strategy
from apps.strategies.errors import InvalidParamsError, StrategyComputeError
from apps.strategies.params import Dimension, StrategyParams
from apps.strategies.registry import strategy_class

__all__ = [
    "GRID_LIMIT",
    "METHODS",
    "OBJECTIVES",
    "OptimisationResult",
    "TrialEvaluator",
    "TrialResult",
    "best_trial",
    "engine_settings",
    "grid_points",
    "heatmap",
    "objective_value",
    "optimise",
    "space_build",
    "sqlalchemy_url",
    "storage_dispose",
    "storage_open",
    "study_create",
    "study_delete",
    "study_trials",
    "trials_evaluate",
    "trials_run",
]

OBJECTIVES = ("sharpe", "total_return", "calmar", "profit_factor")
METHODS = ("grid", "tpe")
GRID_LIMIT = 10_000
MAX_TRIALS = 100_000
HEATMAP_MAX_CELLS = 40
_PROGRESS_STEPS = 100

Progress = Callable[[float], None]


@dataclass(frozen=True)
class TrialResult:
    """One evaluated parameter set. ``params`` are the strategy's full params (defaults filled in);
    ``value`` is None unless ``is_feasible``; ``error`` says why a set could not run at all."""

    number: int
    params: dict[str, Any]
    value: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    is_feasible: bool = False
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "params": self.params,
            "value": self.value,
            "metrics": self.metrics,
            "is_feasible": self.is_feasible,
            "error": self.error,
        }


def objective_value(metrics: Mapping[str, Any], objective: str) -> float | None:
    """The objective's value in ``metrics`` (bigger is better), None when undefined (missing, None,
    NaN or infinite: e.g. a profit factor with no losing trade)."""
    if objective not in OBJECTIVES:
        raise ResearchInputError(
            f"Unknown objective '{objective}'; use one of {', '.join(OBJECTIVES)}.", field="objective"
        )
    value = metrics.get(objective)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def engine_settings(settings: EngineSettings | Mapping[str, Any] | None) -> EngineSettings:
    """Validated engine settings (raises the engine's InvalidSettingsError naming the field)."""
    if isinstance(settings, EngineSettings):
        return settings
    return EngineSettings.from_dict(settings or {})


class TrialEvaluator:
    """Scores parameter sets of one strategy on ``candles.iloc[start:end]``.

    When the range starts after the first bar, each strategy also sees up to ``warmup()`` bars before
    it as indicator history (trades still open only inside the range): how walk-forward windows
    are evaluated. Build one per task and call it for each set.
    """

    def __init__(
        self,
        *,
        strategy_key: str,
        candles: pd.DataFrame,
        settings: EngineSettings | Mapping[str, Any] | None,
        objective: str,
        min_trades: int = 1,
        base_params: Mapping[str, Any] | None = None,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        objective_value({}, objective)  # refuses an unknown objective up front
        if isinstance(min_trades, bool) or not isinstance(min_trades, int) or min_trades < 0:
            raise ResearchInputError("min_trades must be a whole number, 0 or more.", field="min_trades")
        self.strategy_cls = strategy_class(strategy_key)
        self.settings = engine_settings(settings)
        self.objective = objective
        self.min_trades = min_trades
        self.base_params = dict(base_params or {})
        self.candles = candles
        self.start = start
        self.end = len(candles) if end is None else end
        self.segment = candles.iloc[self.start : self.end]

    def strategy(self, params: Mapping[str, Any]) -> Strategy:
        """The strategy for ``params`` over the base params (InvalidParamsError if refused)."""
        return self.strategy_cls({**self.base_params, **params})

    def runnable(self, strategy: Strategy) -> Strategy:
        """``strategy`` wrapped to see its warm-up history before the range, when there is one."""
        return segment_strategy(strategy, self.candles, self.start, self.end, strategy.warmup())

    def __call__(self, number: int, params: Mapping[str, Any]) -> TrialResult:
        try:
            strategy = self.strategy(params)
        except InvalidParamsError as exc:
            return TrialResult(number, {**self.base_params, **params}, None, error=exc.message)
        full = strategy.params.as_dict()
        try:
            metrics = backtest_metrics(self.runnable(strategy), self.segment, self.settings)
        except StrategyComputeError as exc:
            return TrialResult(number, full, None, error=exc.message)
        value = objective_value(metrics, self.objective)
        feasible = value is not None and int(metrics.get("trades") or 0) >= self.min_trades
        return TrialResult(number, full, value if feasible else None, dict(metrics), feasible)


def trials_evaluate(
    *,
    strategy_key: str,
    params_list: Sequence[Mapping[str, Any]],
    candles: pd.DataFrame,
    settings: EngineSettings | Mapping[str, Any] | None,
    objective: str,
    min_trades: int,
    base_params: Mapping[str, Any] | None = None,
    first_number: int = 0,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Evaluate explicit parameter sets (a chunk of the grid), numbered from ``first_number``.

    ``on_trial`` is called after each one (to store it, report progress, or raise to stop).
    """
    evaluate = TrialEvaluator(
        strategy_key=strategy_key,
        candles=candles,
        settings=settings,
        objective=objective,
        min_trades=min_trades,
        base_params=base_params,
    )
    results: list[TrialResult] = []
    for offset, params in enumerate(params_list):
        result = evaluate(first_number + offset, params)
        results.append(result)
        if on_trial is not None:
            on_trial(result)
    return results


# --- Optuna studies (stored by apps.backtests.research.studies) ------------------------------------


def _chunk_seed(seed: int | None, chunk: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([abs(int(seed)), chunk]).generate_state(1)[0])


def trials_run(
    *,
    storage_url: str,
    study_name: str,
    strategy_key: str,
    candles: pd.DataFrame,
    settings: EngineSettings | Mapping[str, Any] | None,
    objective: str,
    min_trades: int,
    space: Mapping[str, Any] | None,
    n_trials: int,
    on_trial: Callable[[TrialResult], None] | None = None,
    base_params: Mapping[str, Any] | None = None,
    chunk: int = 0,
) -> list[TrialResult]:
    """Run ``n_trials`` TPE trials of the shared study ``study_name`` (made by :func:`study_create`).

    Trial numbers are the study's (unique across workers). ``on_trial`` is called after each trial
    has been told to the study; it may raise to stop (e.g. the job was cancelled).
    """
    evaluate = TrialEvaluator(
        strategy_key=strategy_key,
        candles=candles,
        settings=settings,
        objective=objective,
        min_trades=min_trades,
        base_params=base_params,
    )
    dims = space_build(evaluate.strategy_cls.Params, space)
    _check_trials(n_trials)
    storage = storage_open(storage_url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seed = storage.get_study_user_attrs(storage.get_study_id_from_name(study_name)).get("seed")
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.TPESampler(seed=_chunk_seed(seed, chunk))
    )
    return _tpe_trials(study, dims, evaluate, n_trials, on_trial)


def study_trials(storage_url: str, study_name: str) -> list[TrialResult]:
    """Every finished trial of the study, by number, as TrialResults (what all workers did)."""
    study = optuna.load_study(study_name=study_name, storage=storage_open(storage_url))
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [_trial_result(trial) for trial in study.get_trials(deepcopy=False, states=finished)]


def _trial_result(trial: FrozenTrial) -> TrialResult:
    feasible = trial.state == TrialState.COMPLETE
    stored = trial.user_attrs.get("result") or {}
    return TrialResult(
        number=trial.number,
        params=dict(stored.get("params") or trial.params),
        value=trial.value if feasible else None,
        metrics=dict(stored.get("metrics") or {}),
        is_feasible=feasible,
        error=str(stored.get("error") or ""),
    )


def _distribution(dim: Dimension) -> BaseDistribution:
    if dim.kind in ("choice", "bool"):
        return CategoricalDistribution(list(dim.choices or ()))
    assert dim.low is not None and dim.high is not None
    if dim.kind == "int":
        step = max(1, int(dim.step or 1))
        low = int(dim.low)
        return IntDistribution(low, low + (int(dim.high) - low) // step * step, step=step)
    if dim.step:
        count = math.floor((dim.high - dim.low) / dim.step + 1e-9)
        return FloatDistribution(dim.low, dim.low + count * dim.step, step=dim.step)
    return FloatDistribution(dim.low, dim.high)


def _params_key(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def _tpe_trials(
    study: optuna.Study,
    dims: Sequence[Dimension],
    evaluate: TrialEvaluator,
    n_trials: int,
    on_trial: Callable[[TrialResult], None] | None,
) -> list[TrialResult]:
    distributions = {dim.name: _distribution(dim) for dim in dims}
    # TPE often proposes a set again once it has converged: score each distinct set once.
    seen: dict[tuple[tuple[str, Any], ...], TrialResult] = {}
    results: list[TrialResult] = []
    for _ in range(n_trials):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = study.ask(distributions)
        try:
            key = _params_key(trial.params)
            cached = seen.get(key)
            result = evaluate(trial.number, trial.params) if cached is None else replace(cached, number=trial.number)
            seen[key] = result
            # One attribute, one commit: the metrics and full params for study_trials().
            trial.set_user_attr("result", {"params": result.params, "metrics": result.metrics, "error": result.error})
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        if result.is_feasible:
            study.tell(trial, result.value)
        else:
            study.tell(trial, state=TrialState.PRUNED)
        results.append(result)
        if on_trial is not None:
            on_trial(result)
    return results


# --- whole optimisations in memory ----------------------------------------------------------------


@dataclass(frozen=True)
class OptimisationResult:
    method: str
    objective: str
    dimensions: list[Dimension]
    trials: list[TrialResult]

    @property
    def best(self) -> TrialResult | None:
        return best_trial(self.trials)

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "method": self.method,
            "objective": self.objective,
            "trials": [trial.as_dict() for trial in self.trials],
            "best": best.as_dict() if best is not None else None,
        }


def _check_trials(n_trials: int) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_TRIALS:
        raise ResearchInputError(f"n_trials must be a whole number from 1 to {MAX_TRIALS:,}.", field="n_trials")


def _throttled(progress: Progress | None, total: int) -> Callable[[int], None]:
    """Calls ``progress(done / total)`` about :data:`_PROGRESS_STEPS` times in all."""
    every = max(1, total // _PROGRESS_STEPS)

    def report(done: int) -> None:
        if progress is not None and (done % every == 0 or done == total):
            progress(done / total)

    return report


def search(
    evaluate: TrialEvaluator,
    dims: Sequence[Dimension],
    *,
    method: str,
    n_trials: int,
    seed: int | None,
    grid_limit: int = GRID_LIMIT,
    progress: Progress | None = None,
) -> list[TrialResult]:
    """Run a whole search in this process: every grid point, or ``n_trials`` TPE trials in an
    in-memory study seeded with ``seed``. ``n_trials`` only applies to TPE; the grid runs every
    valid combination up to ``grid_limit``."""
    if method == "grid":
        params_cls: type[StrategyParams] = evaluate.strategy_cls.Params
        points = grid_points(dims, limit=grid_limit, params_cls=params_cls, base_params=evaluate.base_params)
        if not points:
            raise ResearchInputError("No combination of this grid satisfies the strategy's rules.", field="space")
        report = _throttled(progress, len(points))
        results = []
        for number, point in enumerate(points):
            results.append(evaluate(number, point))
            report(number + 1)
        return results
    if method == "tpe":
        _check_trials(n_trials)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        report = _throttled(progress, n_trials)
        done = iter(range(1, n_trials + 1))
        return _tpe_trials(study, dims, evaluate, n_trials, lambda trial: report(next(done)))
    raise ResearchInputError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.", field="method")


def optimise(
    *,
    strategy_key: str,
    candles: pd.DataFrame,
    settings: EngineSettings | Mapping[str, Any] | None = None,
    method: str = "grid",
    objective: str = "sharpe",
    space: Mapping[str, Any] | None = None,
    min_trades: int = 1,
    n_trials: int = 100,
    seed: int | None = None,
    base_params: Mapping[str, Any] | None = None,
    grid_limit: int = GRID_LIMIT,
    progress: Progress | None = None,
) -> OptimisationResult:
    """A whole optimisation in this process (no database): for the CLI, walk-forward and tests.
    The platform's distributed path uses :func:`trials_evaluate` / :func:`trials_run` instead."""
    evaluate = TrialEvaluator(
        strategy_key=strategy_key,
        candles=candles,
        settings=settings,
        objective=objective,
        min_trades=min_trades,
        base_params=base_params,
    )
    dims = space_build(evaluate.strategy_cls.Params, space)
    trials = search(
        evaluate, dims, method=method, n_trials=n_trials, seed=seed, grid_limit=grid_limit, progress=progress
    )
    return OptimisationResult(method=method, objective=objective, dimensions=list(dims), trials=trials)


def best_trial(trials: Iterable[TrialResult]) -> TrialResult | None:
    """The feasible trial with the highest value (the lowest number among equals), or None."""
    feasible = [trial for trial in trials if trial.is_feasible and trial.value is not None]
    return max(feasible, key=lambda trial: (trial.value, -trial.number), default=None)


def heatmap(
    trials: Iterable[TrialResult], x: str, y: str, *, max_cells: int = HEATMAP_MAX_CELLS
) -> dict[str, list[Any]]:
    """The objective over two parameters: ``z[i][j]`` is the best feasible value among trials with
    ``y == y[i]`` and ``x == x[j]`` (the maximum over the other parameters), None where no feasible
    trial landed. A numeric axis with more than ``max_cells`` distinct values (TPE over floats) is
    cut into ``max_cells`` equal bins labelled by their centres."""
    if x == y:
        raise ResearchInputError("Pick two different parameters for the heat map.", field="y")
    rows = [(t.params[x], t.params[y], t.value) for t in trials if x in t.params and y in t.params]
    xs, x_cell = _axis([row[0] for row in rows], max_cells)
    ys, y_cell = _axis([row[1] for row in rows], max_cells)
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for x_value, y_value, value in rows:
        if value is None:
            continue
        i, j = y_cell(y_value), x_cell(x_value)
        current = z[i][j]
        if current is None or value > current:
            z[i][j] = value
    return {"x": xs, "y": ys, "z": z}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _axis(values: list[Any], max_cells: int) -> tuple[list[Any], Callable[[Any], int]]:
    distinct = sorted(set(values), key=lambda v: (0, v, "") if _is_number(v) else (1, 0, str(v)))
    if len(distinct) <= max_cells or not all(_is_number(v) for v in distinct):
        position = {value: i for i, value in enumerate(distinct)}
        return distinct, position.__getitem__
    low, high = float(distinct[0]), float(distinct[-1])
    width = (high - low) / max_cells
    centres = [round(low + width * (i + 0.5), 12) for i in range(max_cells)]
    return centres, lambda v: min(int((float(v) - low) / width), max_cells - 1)
