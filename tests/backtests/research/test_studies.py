"""Optuna studies in a database: shared by worker processes, seeded, infeasible and failed trials."""

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import optuna
import pytest
from optuna.trial import TrialState

from apps.backtests.engine import InvalidCandlesError
from apps.backtests.research.optimise import (
    best_trial,
    sqlalchemy_url,
    storage_dispose,
    study_create,
    study_delete,
    study_trials,
    trials_run,
)
from tests.backtests.research.workers import OHLCV_DIR, SPACE, run_chunk
from tests.conftest import require
from tests.marketdata.ohlcv import load_candles


@pytest.fixture
def storage_url(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.sqlite3"
    yield url
    storage_dispose(url)


@pytest.fixture(scope="module")
def btc():
    return load_candles("BTC-USDT_1h")


def run(storage_url, study, candles, **kwargs):
    arguments = {
        "storage_url": storage_url,
        "study_name": study,
        "strategy_key": "sma_cross",
        "candles": candles,
        "settings": {"costs": {"fee": 0.001}},
        "objective": "sharpe",
        "min_trades": 3,
        "space": SPACE,
        "n_trials": 6,
        **kwargs,
    }
    return trials_run(**arguments)


def test_two_processes_share_one_study(storage_url):
    require((OHLCV_DIR / "BTC-USDT_1h.csv.gz").exists(), "needs real candles in ../shared/data/ohlcv")
    # given: one study in an SQLite file, as the coordinator creates it
    study_create(storage_url, "shared", seed=11)
    # when: two worker processes each run a chunk of it at the same time
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_chunk, storage_url, "shared", 8, chunk) for chunk in range(2)]
        numbers = [future.result(timeout=110) for future in futures]
    # then: every trial of both landed in the one study, numbered uniquely by it
    stored = study_trials(storage_url, "shared")
    assert sorted(t.number for t in stored) == list(range(16))
    assert sorted(numbers[0] + numbers[1]) == list(range(16))
    assert len(numbers[0]) == len(numbers[1]) == 8
    study = optuna.load_study(study_name="shared", storage=storage_url)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    feasible = [t for t in stored if t.is_feasible]
    assert feasible and all(t.metrics["trades"] >= 3 for t in feasible)
    best = best_trial(stored)
    assert best is not None and study.best_value == best.value


def test_chunks_of_one_worker_continue_the_same_study(storage_url, btc):
    study_create(storage_url, "s", seed=1)
    first = run(storage_url, "s", btc, chunk=0)
    second = run(storage_url, "s", btc, chunk=1)
    assert [r.number for r in first + second] == list(range(12))
    assert [t.params for t in study_trials(storage_url, "s")] == [r.params for r in first + second]


def test_a_seeded_study_reproduces(storage_url, btc):
    runs = []
    for name in ("a", "b"):
        study_create(storage_url, name, seed=5)
        runs.append(run(storage_url, name, btc, n_trials=12))
    assert [r.params for r in runs[0]] == [r.params for r in runs[1]]
    assert [r.value for r in runs[0]] == [r.value for r in runs[1]]
    study_create(storage_url, "c", seed=6)
    assert [r.params for r in run(storage_url, "c", btc, n_trials=12)] != [r.params for r in runs[0]]


def test_study_create_is_idempotent_and_keeps_the_first_seed(storage_url, btc):
    study_create(storage_url, "s", seed=5)
    study_create(storage_url, "s", seed=99)
    study_create(storage_url, "t", seed=5)
    assert [r.params for r in run(storage_url, "s", btc)] == [r.params for r in run(storage_url, "t", btc)]


def test_infeasible_trials_are_pruned_and_never_best(storage_url, btc):
    study_create(storage_url, "s", seed=1)
    results = run(storage_url, "s", btc, min_trades=10_000)
    assert all(not r.is_feasible and r.value is None for r in results)
    study = optuna.load_study(study_name="s", storage=storage_url)
    assert {t.state for t in study.trials} == {TrialState.PRUNED}
    assert all(not t.is_feasible for t in study_trials(storage_url, "s"))
    with pytest.raises(ValueError):
        _ = study.best_trial


def test_on_trial_can_stop_the_chunk_after_the_trial_is_told(storage_url, btc):
    study_create(storage_url, "s", seed=1)
    seen = []

    def stop_after_two(result):
        seen.append(result.number)
        if len(seen) == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        run(storage_url, "s", btc, on_trial=stop_after_two)
    study = optuna.load_study(study_name="s", storage=storage_url)
    assert [t.number for t in study.trials] == [0, 1]
    assert all(t.state != TrialState.RUNNING for t in study.trials)


def test_a_crash_during_evaluation_fails_the_trial_and_propagates(storage_url, btc):
    broken = btc.copy()
    broken.iloc[100, broken.columns.get_loc("close")] = float("nan")
    study_create(storage_url, "s", seed=1)
    with pytest.raises(InvalidCandlesError):
        run(storage_url, "s", broken)
    study = optuna.load_study(study_name="s", storage=storage_url)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_study_delete_removes_the_study(storage_url, btc):
    study_create(storage_url, "s", seed=1)
    study_delete(storage_url, "s")
    study_delete(storage_url, "s")  # already gone: no error
    assert optuna.get_all_study_names(storage=storage_url) == []


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+psycopg://u@db/app"),
        ("sqlite:////var/lib/app/db.sqlite3", "sqlite:////var/lib/app/db.sqlite3"),
    ],
)
def test_sqlalchemy_url(database_url, expected):
    assert sqlalchemy_url(database_url) == expected


@pytest.mark.postgres
def test_a_study_in_postgresql_the_production_storage(db, btc):
    from django.db import connection
    from sqlalchemy.engine import URL

    # given: the test database, reached the way the platform reaches its own
    config = connection.settings_dict
    url = URL.create(
        "postgresql+psycopg",
        username=config["USER"] or None,
        password=config["PASSWORD"] or None,
        host=config["HOST"] or None,
        port=int(config["PORT"]) if config["PORT"] else None,
        database=config["NAME"],
    ).render_as_string(hide_password=False)
    study_create(url, "pg", seed=2)
    try:
        # when
        first = run(url, "pg", btc, chunk=0)
        second = run(url, "pg", btc, chunk=1)
        # then
        stored = study_trials(url, "pg")
        assert [t.number for t in stored] == [r.number for r in first + second] == list(range(12))
        assert [t.metrics for t in stored] == [r.metrics for r in first + second]
    finally:
        study_delete(url, "pg")
        storage_dispose(url)  # or the test database could not be dropped
