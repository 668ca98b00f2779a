"""Optimisations (grid and TPE fanned out as chunk tasks, finalised by the last chunk by count),
walk-forwards and Monte Carlo as platform jobs."""

import itertools
import math
import threading
from typing import Any

import numpy as np
import optuna
import pytest

from apps.backtests import services, tasks
from apps.backtests.engine import backtest_metrics
from apps.backtests.models import Backtest, BacktestTrade, JobStatus, MonteCarlo, Optimisation, OptimisationTrial
from apps.backtests.research.montecarlo import monte_carlo
from apps.backtests.services.studies import optuna_storage_url
from apps.common.errors import ApplicationError
from apps.marketdata.models import Candle
from apps.marketdata.storage import candles_frame
from apps.strategies.registry import get_strategy
from tests.backtests.platform_support import Pushed, Sent, reload, run_spec
from tests.common.live_db import close_thread_connections, transactional_db

pytestmark = pytest.mark.django_db

FAST = [5, 10, 15, 20]
SLOW = [30, 40, 50, 60]
SPACE = {"fast": {"low": 5, "high": 20, "step": 5}, "slow": {"low": 30, "high": 60, "step": 10}}
RANGE = {"start_at": None, "end_at": None}


def optimisation(owner: Any, instrument: Any, capture: Any, **overrides: Any) -> Optimisation:
    spec = {
        **run_spec(instrument, params={}),
        "method": "grid",
        "objective": "sharpe",
        "space": SPACE,
        "min_trades": 1,
        "n_trials": 100,
        **overrides,
    }
    with capture(execute=True):
        return services.optimisation_create(owner=owner, **spec)


def run_chunk(job: Optimisation, chunk: int, capture: Any, sent: Sent | None = None) -> Optimisation:
    """Run a chunk task with the arguments it was sent with (as a worker would)."""
    points = sent.points.get((job.pk, chunk)) if sent is not None else None
    with capture(execute=True):
        tasks.optimisation_chunk_run(job.pk, chunk, points)
    return reload(job)


@pytest.fixture
def small_chunks(settings: Any) -> None:
    settings.OPTIMISATION_GRID_CHUNK = 5
    settings.OPTIMISATION_TPE_CHUNK = 10


# --- grid -----------------------------------------------------------------------------------------


def test_grid_optimisation_fans_out_and_the_last_chunk_by_count_finalises(
    alice, btc, sent: Sent, small_chunks, django_capture_on_commit_callbacks, pushed: Pushed
):
    # given: a 4 x 4 grid in chunks of 5 trials
    job = optimisation(alice, btc, django_capture_on_commit_callbacks)
    assert job.n_trials == 16 and sent["optimisation_run"] == [(job.pk,)]
    # when: the coordinator runs
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    job = reload(job)
    # then: four chunks are sent, after commit
    assert job.status == JobStatus.RUNNING and job.chunks_total == 4
    assert sent["optimisation_chunk_run"] == [(job.pk, 0), (job.pk, 1), (job.pk, 2), (job.pk, 3)]
    # each grid chunk carries its points: the grid is enumerated once, by the coordinator
    carried = [sent.points[(job.pk, chunk)] for chunk in range(4)]
    assert [len(points) for points in carried] == [5, 5, 5, 1]
    assert sorted((p["fast"], p["slow"]) for points in carried for p in points) == sorted(itertools.product(FAST, SLOW))

    # when: chunks finish out of order; none of the first three finalises
    for chunk, done in ((2, 5), (0, 10), (3, 11)):
        job = run_chunk(job, chunk, django_capture_on_commit_callbacks, sent)
        assert job.status == JobStatus.RUNNING and job.trials_done == done and job.best_params is None
    # a redelivered chunk stores nothing twice
    job = run_chunk(job, 0, django_capture_on_commit_callbacks, sent)
    assert job.trials_done == 11 == OptimisationTrial.objects.filter(optimisation=job).count()
    # the last one (by count, not by time) finalises
    job = run_chunk(job, 1, django_capture_on_commit_callbacks, sent)

    # then: every grid point once, numbered 0..15
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0 and job.trials_done == 16
    trials = list(OptimisationTrial.objects.filter(optimisation=job).order_by("number"))
    assert [t.number for t in trials] == list(range(16))
    assert {(t.params["fast"], t.params["slow"]) for t in trials} == set(itertools.product(FAST, SLOW))
    # the best is the highest value, and that value is what the engine gives for those params
    feasible = [t for t in trials if t.is_feasible]
    assert job.best_value == max(t.value for t in feasible)
    candles = candles_frame(btc, "1h")
    metrics = backtest_metrics(get_strategy("sma_cross", job.best_params), candles, job.settings)
    assert metrics["sharpe"] == pytest.approx(job.best_value, rel=1e-9)
    assert job.best_metrics["trades"] == metrics["trades"]
    # progress reached alice, per chunk, ending succeeded
    events = [e for e in pushed.of(alice) if e["kind"] == "optimisation"]
    assert [round(e["progress"], 2) for e in events if e["status"] == "running"][-3:] == [0.25, 0.5, 0.75]
    assert events[-1]["status"] == "succeeded" and events[-1]["progress"] == 1.0


def test_a_redelivered_coordinator_does_nothing(
    alice, btc, sent: Sent, small_chunks, django_capture_on_commit_callbacks
):
    job = optimisation(alice, btc, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
        tasks.optimisation_run(job.pk)
    assert len(sent["optimisation_chunk_run"]) == 4


def test_cancelling_an_optimisation_stops_its_chunks(
    alice, btc, sent, small_chunks, django_capture_on_commit_callbacks
):
    job = optimisation(alice, btc, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    job = run_chunk(job, 0, django_capture_on_commit_callbacks)
    services.optimisation_cancel(optimisation=job, actor=alice)
    for chunk in (1, 2, 3):
        job = run_chunk(job, chunk, django_capture_on_commit_callbacks)
    assert job.status == JobStatus.CANCELLED and job.trials_done == 5 and job.best_params is None
    assert OptimisationTrial.objects.filter(optimisation=job).count() == 5


def test_a_failing_chunk_fails_the_optimisation_and_the_rest_do_nothing(
    alice, btc, sent, small_chunks, django_capture_on_commit_callbacks
):
    job = optimisation(alice, btc, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    Candle.objects.filter(instrument=btc).delete()
    job = run_chunk(job, 1, django_capture_on_commit_callbacks)
    assert (job.status, job.error) == (JobStatus.FAILED, "No candles in range.")
    job = run_chunk(job, 0, django_capture_on_commit_callbacks)
    assert job.status == JobStatus.FAILED and job.trials_done == 0


def test_an_optimisation_where_nothing_is_feasible_succeeds_without_a_best(
    alice, btc, sent, small_chunks, django_capture_on_commit_callbacks
):
    job = optimisation(alice, btc, django_capture_on_commit_callbacks, min_trades=1_000_000)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    for chunk in range(reload(job).chunks_total):
        job = run_chunk(job, chunk, django_capture_on_commit_callbacks)
    assert job.status == JobStatus.SUCCEEDED and job.best_params is None and job.best_value is None
    assert "No trial made at least 1000000 trade(s)" in job.error
    assert not OptimisationTrial.objects.filter(optimisation=job, is_feasible=True).exists()


# --- TPE: one shared study ------------------------------------------------------------------------


def _load_study(job: Optimisation) -> optuna.Study:
    """The job's study, through a storage of the test's own whose connections are closed here."""
    storage = optuna.storages.RDBStorage(optuna_storage_url(study_name=job.study_name))
    try:
        return optuna.load_study(study_name=job.study_name, storage=storage)
    finally:
        storage.engine.dispose()


def _study_trials(job: Optimisation) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(optuna_storage_url(study_name=job.study_name))
    try:
        return optuna.load_study(study_name=job.study_name, storage=storage).get_trials(deepcopy=True)
    finally:
        storage.engine.dispose()


def test_tpe_chunks_share_one_study(
    alice, btc, sent, small_chunks, optuna_dir, django_capture_on_commit_callbacks, monkeypatch
):
    # given: 20 TPE trials in two chunks of 10
    job = optimisation(alice, btc, django_capture_on_commit_callbacks, method="tpe", n_trials=20, seed=11)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    job = reload(job)
    assert job.chunks_total == 2 and job.study_name.startswith(f"optimisation-{job.pk}-")
    assert _study_trials(job) == []
    # when: the first chunk runs; the second one starts from the study the first one filled
    job = run_chunk(job, 0, django_capture_on_commit_callbacks)
    seen_by_second = len(_study_trials(job))
    monkeypatch.setattr("apps.backtests.services.optimisations._study_delete", lambda name: None)
    job = run_chunk(job, 1, django_capture_on_commit_callbacks)
    # then: one study of 20 trials, numbered across both chunks; the same 20 are stored
    assert seen_by_second == 10
    numbers = sorted(t.number for t in _study_trials(job))
    assert numbers == list(range(20))
    stored = sorted(OptimisationTrial.objects.filter(optimisation=job).values_list("number", flat=True))
    assert stored == numbers
    assert job.status == JobStatus.SUCCEEDED and job.best_params is not None
    assert {job.best_params["fast"], job.best_params["slow"]} <= set(FAST) | set(SLOW)


def test_the_study_is_deleted_once_the_trials_are_stored(
    alice, btc, sent, small_chunks, optuna_dir, django_capture_on_commit_callbacks
):
    job = optimisation(alice, btc, django_capture_on_commit_callbacks, method="tpe", n_trials=10)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.optimisation_run(job.pk)
    job = run_chunk(job, 0, django_capture_on_commit_callbacks)
    assert job.status == JobStatus.SUCCEEDED and job.trials_done == 10
    with pytest.raises(KeyError):
        _load_study(job)


@pytest.mark.postgres
@transactional_db()
def test_two_workers_run_tpe_chunks_on_one_study_at_once(alice, btc, sent, small_chunks, optuna_dir, settings):
    # given: 40 trials in four chunks; the study lives in the platform's PostgreSQL database
    settings.OPTUNA_STORAGE_URL = ""
    job = services.optimisation_create(
        owner=alice,
        **run_spec(btc, params={}),
        method="tpe",
        objective="sharpe",
        space=SPACE,
        min_trades=1,
        n_trials=40,
    )
    tasks.optimisation_run(job.pk)
    assert optuna_storage_url(study_name="x").startswith("postgresql+psycopg://")
    errors: list[BaseException] = []

    def worker(chunks: list[int]) -> None:
        try:
            for chunk in chunks:
                tasks.optimisation_chunk_run(job.pk, chunk)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            close_thread_connections()

    # when: two workers take two chunks each, at the same time
    threads = [threading.Thread(target=worker, args=([0, 2],)), threading.Thread(target=worker, args=([1, 3],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # then: all 40 stored once, with the study's unique numbers, finalised once
    assert errors == []
    job = reload(job)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.trials_done == 40 and sorted(job.chunks_done) == [0, 1, 2, 3]
    numbers = list(OptimisationTrial.objects.filter(optimisation=job).values_list("number", flat=True))
    assert len(numbers) == len(set(numbers)) == 40


def test_optimisation_of_an_unknown_parameter_names_it(alice, btc, sent, django_capture_on_commit_callbacks):
    with pytest.raises(ApplicationError) as refused:
        optimisation(alice, btc, django_capture_on_commit_callbacks, space={"fast": {"low": 5, "high": 9}, "x": {}})
    assert "space.x" in refused.value.extra["fields"]
    assert Optimisation.objects.count() == 0


# --- walk-forward ---------------------------------------------------------------------------------


def test_walk_forward_runs_every_window_and_stitches_out_of_sample(
    alice, btc, sent: Sent, django_capture_on_commit_callbacks, pushed: Pushed
):
    # given
    with django_capture_on_commit_callbacks(execute=True):
        job = services.walk_forward_create(
            owner=alice,
            **run_spec(btc, params={}),
            mode="rolling",
            windows_count=3,
            train_ratio=0.7,
            method="grid",
            objective="sharpe",
            space=SPACE,
            min_trades=1,
            n_trials=50,
        )
    assert sent["walk_forward_run"] == [(job.pk,)] and job.n_trials == 16
    # when
    with django_capture_on_commit_callbacks(execute=True):
        tasks.walk_forward_run(job.pk)
    job = reload(job)
    # then
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert len(job.windows) == 3
    assert all(w["trials"] == 16 for w in job.windows)
    tests = [(w["test_from"], w["test_to"]) for w in job.windows]
    assert tests == sorted(tests) and all(a[1] < b[0] for a, b in itertools.pairwise(tests))
    assert all(w["train_to"] < w["test_from"] for w in job.windows)
    assert all(w["best_params"] is None or w["best_params"]["fast"] in FAST for w in job.windows)
    assert "degradation" in job.metrics and "total_return" in job.metrics
    assert job.equity["t"] and len(job.equity["t"]) == len(job.equity["equity"])
    assert job.equity["equity"][0] == pytest.approx(job.settings["cash"], rel=0.05)
    events = [e for e in pushed.of(alice) if e["kind"] == "walk_forward"]
    assert events[-1]["status"] == "succeeded" and len(events) > 3


def test_a_cancelled_walk_forward_stores_nothing(alice, btc, sent, django_capture_on_commit_callbacks):
    job = services.walk_forward_create(
        owner=alice,
        **run_spec(btc, params={}),
        mode="anchored",
        windows_count=2,
        train_ratio=0.6,
        method="grid",
        objective="total_return",
        space=SPACE,
        min_trades=1,
        n_trials=10,
    )
    services.walk_forward_cancel(walk_forward=job, actor=alice)
    tasks.walk_forward_run(job.pk)
    job = reload(job)
    assert job.status == JobStatus.CANCELLED and job.windows == [] and job.metrics == {}


# --- Monte Carlo ----------------------------------------------------------------------------------


@pytest.fixture
def finished_backtest(alice: Any, btc: Any, sent: Any, django_capture_on_commit_callbacks: Any) -> Backtest:
    backtest = services.backtest_create(owner=alice, **run_spec(btc))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.backtest_run(backtest.pk)
    done: Backtest = reload(backtest)
    assert done.status == JobStatus.SUCCEEDED
    return done


def test_monte_carlo_of_a_backtest_simulates_its_stored_trades(
    alice, finished_backtest, sent: Sent, django_capture_on_commit_callbacks, pushed: Pushed
):
    # given
    with django_capture_on_commit_callbacks(execute=True):
        job = services.monte_carlo_create(
            owner=alice,
            backtest=finished_backtest,
            method="reshuffle",
            simulations=2000,
            noise=0.0,
            seed=7,
            loss_threshold=0.2,
        )
    assert sent["monte_carlo_run"] == [(job.pk,)]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        tasks.monte_carlo_run(job.pk)
    job = reload(job)
    # then: the trades in their own order compound to the backtest's final equity
    assert job.status == JobStatus.SUCCEEDED, job.error
    results = job.results
    assert (
        results["simulations"] == 2000
        and results["seed"] == 7
        and results["trades"] == finished_backtest.metrics["trades"]
    )
    assert results["original"]["final_equity"] == pytest.approx(finished_backtest.metrics["final_equity"], rel=1e-9)
    # reshuffling keeps the product: every simulation ends at the same equity
    assert results["final_equity"]["percentiles"]["1"] == pytest.approx(results["final_equity"]["percentiles"]["99"])
    # the same draw as the research function on returns computed here from the stored trades
    cash = finished_backtest.settings["cash"]
    pnl = np.array(
        [t.pnl for t in BacktestTrade.objects.filter(backtest=finished_backtest).order_by("exit_at", "number")]
    )
    before = cash + np.concatenate([[0.0], np.cumsum(pnl)[:-1]])
    direct = monte_carlo(
        trade_returns=pnl / before, cash=cash, method="reshuffle", simulations=2000, seed=7, loss_threshold=0.2
    )
    assert results["max_drawdown"]["percentiles"] == pytest.approx(direct["max_drawdown"]["percentiles"])
    assert math.isclose(results["probability_of_drawdown_threshold"], direct["probability_of_drawdown_threshold"])
    assert [e for e in pushed.of(alice) if e["kind"] == "monte_carlo"][-1]["status"] == "succeeded"


def test_monte_carlo_only_of_ones_own_succeeded_backtest_with_trades(
    alice, mallory, btc, finished_backtest, sent, django_capture_on_commit_callbacks
):
    args = {"method": "resample", "simulations": 1000, "noise": 0.0, "seed": None, "loss_threshold": 0.2}
    with pytest.raises(ApplicationError) as refused:
        services.monte_carlo_create(owner=mallory, backtest=finished_backtest, **args)
    assert refused.value.extra["fields"] == {"backtest": ["No such backtest."]}
    queued = services.backtest_create(owner=alice, **run_spec(btc))
    with pytest.raises(ApplicationError):
        services.monte_carlo_create(owner=alice, backtest=queued, **args)
    BacktestTrade.objects.filter(backtest=finished_backtest).delete()
    with pytest.raises(ApplicationError) as no_trades:
        services.monte_carlo_create(owner=alice, backtest=finished_backtest, **args)
    assert "no trades" in no_trades.value.message
    assert MonteCarlo.objects.count() == 0
