"""Backtests as platform jobs: create (validate, queue after commit), the run on real candles,
claims, cancel, progress events, failures, re-runs, the reaper."""

import math
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.backtests import services, tasks
from apps.backtests.engine import run_backtest
from apps.backtests.models import Backtest, BacktestTrade, JobStatus, Optimisation
from apps.backtests.services import backtests as backtest_services
from apps.backtests.services import jobs
from apps.common.errors import Conflict, NotFound
from apps.marketdata.models import Candle
from apps.marketdata.storage import candles_frame
from apps.strategies import services as strategy_services
from apps.strategies.lookahead import fingerprint, lookahead_check
from apps.strategies.models import LookaheadVerdict
from apps.strategies.registry import get_strategy
from tests.backtests.platform_support import Pushed, Sent, reload, run_spec

pytestmark = pytest.mark.django_db

ENTRY_RULES = {
    "version": 1,
    "enter_long": {"left": {"indicator": "rsi", "args": [14]}, "op": "<", "right": {"value": 30}},
    "exit_long": {"left": {"indicator": "rsi", "args": [14]}, "op": ">", "right": {"value": 70}},
}


def create(owner: Any, instrument: Any, capture: Any, **overrides: Any) -> Backtest:
    with capture(execute=True):
        return services.backtest_create(owner=owner, **run_spec(instrument, **overrides))


def run(backtest: Backtest, capture: Any) -> Backtest:
    with capture(execute=True):
        tasks.backtest_run(backtest.pk)
    return reload(backtest)


# --- create ---------------------------------------------------------------------------------------


def test_create_stores_the_validated_spec_and_queues_after_commit(
    alice, btc, sent: Sent, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        backtest = services.backtest_create(owner=alice, name=" first ", **run_spec(btc, params={"fast": 12}))
        # then: nothing is sent before the commit
        assert sent["backtest_run"] == []
    for callback in callbacks:
        callback()
    assert sent["backtest_run"] == [(backtest.pk,)]
    stored = reload(backtest)
    assert stored.status == JobStatus.QUEUED
    assert stored.name == "first"
    defaults = get_strategy("sma_cross").params.as_dict()
    assert stored.params == {**defaults, "fast": 12}  # defaults filled in
    assert stored.settings["costs"]["fee"] == 0.001
    assert stored.settings["timeframe"] == "1h"  # filled from the run
    assert AuditEvent.objects.filter(action="backtest.created", target_id=str(backtest.pk)).count() == 1


def test_create_takes_the_instruments_trading_rules_into_the_settings(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    # given: the venue's lot size and minimum notional
    type(btc).objects.filter(pk=btc.pk).update(lot_size="0.00001", min_notional="5", tick_size="0.01")
    btc.refresh_from_db()
    # when: the user sets only the tick size
    backtest = create(alice, btc, django_capture_on_commit_callbacks, settings={"instrument": {"tick_size": 0.1}})
    # then
    assert backtest.settings["instrument"] == {"lot_size": 0.00001, "min_notional": 5.0, "tick_size": 0.1}


def test_create_with_a_rule_set_snapshots_its_rules(alice, btc, sent, django_capture_on_commit_callbacks):
    rule_set = strategy_services.rule_set_create(owner=alice, name="RSI dip", rules=ENTRY_RULES)
    backtest = create(
        alice, btc, django_capture_on_commit_callbacks, strategy_key="", params={}, rule_set_id=rule_set.pk
    )
    assert backtest.strategy_key == "rules"
    assert backtest.rule_set == rule_set
    assert backtest.rules == rule_set.rules
    assert backtest.params == {}


# --- the run --------------------------------------------------------------------------------------


def test_run_stores_metrics_trades_and_curves_of_the_engine(alice, btc, sent, django_capture_on_commit_callbacks):
    # given
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    # when
    done = run(backtest, django_capture_on_commit_callbacks)
    # then: the job succeeded with what the engine computes on the stored candles
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.progress == 1.0
    assert done.started_at is not None and done.finished_at >= done.started_at
    candles = candles_frame(btc, "1h")
    expected = run_backtest(get_strategy("sma_cross", fast=10, slow=30), candles, settings=done.settings)
    assert done.candles_count == len(candles) == 5482
    assert done.metrics["trades"] == expected.metrics["trades"] > 50
    assert done.metrics["final_equity"] == pytest.approx(expected.metrics["final_equity"], rel=1e-12)
    # the stored trades add up to the final equity (fees are inside each pnl)
    trades = list(BacktestTrade.objects.filter(backtest=done).order_by("number"))
    assert [t.number for t in trades] == list(range(1, len(trades) + 1))
    assert len(trades) == done.metrics["trades"]
    assert done.settings["cash"] + math.fsum(t.pnl for t in trades) == pytest.approx(done.metrics["final_equity"])
    first = expected.trades.iloc[0]
    assert (trades[0].side, trades[0].entry_at, trades[0].exit_reason) == (
        first["side"],
        first["entry_at"].to_pydatetime(),
        first["exit_reason"],
    )
    assert trades[0].entry_price == pytest.approx(first["entry_price"], rel=1e-12)
    # curves: downsampled under the chart limit, epoch ms of the candles, the worst drawdown kept
    curves = done.equity
    assert curves["bars"] == len(candles) and len(candles) / 2 < curves["points"] <= 5000
    assert len(curves["t"]) == len(curves["equity"]) == len(curves["drawdown"]) == curves["points"]
    assert curves["t"] == sorted(set(curves["t"]))
    assert curves["t"][0] == candles.index[0].value // 1_000_000
    assert curves["t"][-1] == candles.index[-1].value // 1_000_000
    assert curves["equity"][-1] == pytest.approx(done.metrics["final_equity"])
    assert -min(curves["drawdown"]) == pytest.approx(done.metrics["max_drawdown"])
    assert curves["benchmark"][0] == pytest.approx(done.settings["cash"])
    assert set(done.timings) >= {"load_ms", "lookahead_ms", "engine_ms", "store_trades_ms"}
    assert done.is_lookahead_biased is False and done.lookahead["is_biased"] is False


def test_run_of_a_rule_set_uses_the_snapshot_not_later_edits(alice, btc, sent, django_capture_on_commit_callbacks):
    # given: a backtest of a rule set, then the rule set is changed to something that never trades
    rule_set = strategy_services.rule_set_create(owner=alice, name="RSI dip", rules=ENTRY_RULES)
    backtest = create(
        alice, btc, django_capture_on_commit_callbacks, strategy_key="rules", params={}, rule_set_id=rule_set.pk
    )
    never = {**ENTRY_RULES, "enter_long": {"left": {"column": "close"}, "op": "<", "right": {"value": 0}}}
    strategy_services.rule_set_update(rule_set=rule_set, name="RSI dip", rules=never)
    # when
    done = run(backtest, django_capture_on_commit_callbacks)
    # then: it ran the rules it was created with, which do trade on these candles
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.metrics["trades"] > 0


def test_a_redelivered_task_does_nothing(alice, btc, sent, django_capture_on_commit_callbacks, pushed: Pushed):
    # given: the task ran once
    backtest = run(create(alice, btc, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)
    trades = BacktestTrade.objects.filter(backtest=backtest).count()
    events = len(pushed.events)
    # when: the same message arrives again
    again = run(backtest, django_capture_on_commit_callbacks)
    # then: nothing changed and nothing was announced
    assert (again.status, again.finished_at, again.metrics) == (backtest.status, backtest.finished_at, backtest.metrics)
    assert BacktestTrade.objects.filter(backtest=backtest).count() == trades
    assert len(pushed.events) == events


def test_a_task_finding_its_job_claimed_by_another_delivery_does_nothing(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    Backtest.objects.filter(pk=backtest.pk).update(status=JobStatus.RUNNING)
    after = run(backtest, django_capture_on_commit_callbacks)
    assert after.status == JobStatus.RUNNING
    assert after.metrics == {} and not BacktestTrade.objects.filter(backtest=backtest).exists()


def test_a_task_for_a_deleted_backtest_does_nothing(alice, btc, sent, django_capture_on_commit_callbacks):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    Backtest.objects.filter(pk=backtest.pk).delete()
    tasks.backtest_run(backtest.pk)  # no exception


def test_progress_goes_to_the_owner_only_after_commit_and_ends_succeeded(
    alice, bob, btc, sent, django_capture_on_commit_callbacks, pushed: Pushed
):
    # given
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    create(bob, btc, django_capture_on_commit_callbacks)
    # when: the run's events are held until the (test's) commit
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        tasks.backtest_run(backtest.pk)
    assert pushed.events == []
    for callback in callbacks:
        callback()
    # then: alice's job only, to alice only, rising to 1 and ending succeeded
    assert pushed.users == {alice.pk}
    events = pushed.of(alice)
    assert {e["kind"] for e in events} == {"backtest"} and {e["id"] for e in events} == {backtest.pk}
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and len(progress) >= 4
    assert events[0]["status"] == "running"
    assert events[-1] == {"kind": "backtest", "id": backtest.pk, "status": "succeeded", "progress": 1.0, "error": ""}


def test_a_strategy_that_raises_fails_its_backtest_and_the_next_one_runs(
    alice, btc, sent, django_capture_on_commit_callbacks, pushed: Pushed
):
    # given: a broken strategy queued before a good one
    broken = create(alice, btc, django_capture_on_commit_callbacks, strategy_key="test_exploding", params={})
    good = create(alice, btc, django_capture_on_commit_callbacks)
    # when: the worker runs both in turn
    failed = run(broken, django_capture_on_commit_callbacks)
    succeeded = run(good, django_capture_on_commit_callbacks)
    # then: the failure says what the strategy raised, and the worker carried on
    assert failed.status == JobStatus.FAILED
    assert "division by zero in my indicator" in failed.error
    assert failed.finished_at is not None
    assert succeeded.status == JobStatus.SUCCEEDED
    last = pushed.of(alice)
    assert any(e["id"] == broken.pk and e["status"] == "failed" and "division by zero" in e["error"] for e in last)


def test_candles_gone_before_the_run_fail_it_with_no_candles_in_range(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    Candle.objects.filter(instrument=btc).delete()
    done = run(backtest, django_capture_on_commit_callbacks)
    assert (done.status, done.error) == (JobStatus.FAILED, "No candles in range.")


def test_an_unexpected_error_fails_the_backtest_with_a_readable_message(
    alice, btc, sent, django_capture_on_commit_callbacks, monkeypatch
):
    def broken_store(**kwargs: Any) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(backtest_services, "trades_store", broken_store)
    done = run(create(alice, btc, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)
    assert (done.status, done.error) == (JobStatus.FAILED, "RuntimeError: disk full")
    assert not BacktestTrade.objects.filter(backtest=done).exists()


def test_the_soft_time_limit_fails_the_backtest(
    alice, btc, sent, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.BACKTEST_TIME_LIMIT_SECONDS = 1800

    def too_slow(*args: Any, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(backtest_services, "run_backtest", too_slow)
    done = run(create(alice, btc, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)
    assert done.status == JobStatus.FAILED
    assert done.error == "The backtest took longer than the time limit (1800 s)."


# --- look-ahead -----------------------------------------------------------------------------------


def test_a_peeking_strategy_runs_flagged_and_cannot_be_deployed(alice, btc, sent, django_capture_on_commit_callbacks):
    # given
    backtest = create(alice, btc, django_capture_on_commit_callbacks, strategy_key="test_peeking", params={})
    # when
    done = run(backtest, django_capture_on_commit_callbacks)
    # then: it ran (its numbers are there), flagged, with the check's report
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.metrics["trades"] > 0
    assert done.is_lookahead_biased is True
    assert done.lookahead["is_biased"] is True and "enter_long" in done.lookahead["columns"]
    strategy = get_strategy("test_peeking")
    verdict = LookaheadVerdict.objects.get(strategy_key="test_peeking")
    assert verdict.is_biased is True
    with pytest.raises(strategy_services.LookaheadBiasedError) as refused:
        strategy_services.strategy_assert_deployable(strategy=strategy)
    assert "strategy" in refused.value.extra["fields"]


def test_an_honest_strategy_is_not_flagged_and_can_be_deployed(alice, btc, sent, django_capture_on_commit_callbacks):
    done = run(create(alice, btc, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)
    assert done.is_lookahead_biased is False
    strategy = get_strategy("sma_cross", fast=10, slow=30)
    assert LookaheadVerdict.objects.get(strategy_key="sma_cross").is_biased is False
    strategy_services.strategy_assert_deployable(strategy=strategy)  # no exception


def test_a_configuration_once_caught_peeking_stays_flagged_on_later_backtests(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    # given: an earlier run (on other candles) caught this exact configuration peeking
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    strategy = get_strategy(backtest.strategy_key, backtest.params)
    LookaheadVerdict.objects.create(
        fingerprint=fingerprint(strategy),
        strategy_key=strategy.key,
        params=strategy.params.as_dict(),
        is_biased=True,
        details={"is_biased": True, "columns": ["enter_long"]},
        checked_at=timezone.now(),
    )
    # when: this run's candles do not expose any peek
    done = run(backtest, django_capture_on_commit_callbacks)
    # then: the backtest is still flagged, with the report that caught it, and deployment is refused
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert done.is_lookahead_biased is True
    assert done.lookahead["columns"] == ["enter_long"]
    with pytest.raises(strategy_services.LookaheadBiasedError):
        strategy_services.strategy_assert_deployable(strategy=strategy)


def test_the_look_ahead_check_agrees_with_the_flag_on_the_same_candles(btc):
    # The flag is the check's verdict on the run's candles, not something the platform decides.
    candles = candles_frame(btc, "1h")
    assert lookahead_check(get_strategy("test_peeking"), candles).is_biased is True
    assert lookahead_check(get_strategy("sma_cross"), candles).is_biased is False


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_of_a_queued_backtest_is_immediate_and_its_task_does_nothing(
    alice, btc, sent, django_capture_on_commit_callbacks, pushed: Pushed
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = services.backtest_cancel(backtest=backtest, actor=alice)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.finished_at is not None
    assert pushed.of(alice)[-1]["status"] == "cancelled"
    after = run(backtest, django_capture_on_commit_callbacks)
    assert after.status == JobStatus.CANCELLED and after.metrics == {}


def test_cancel_of_a_running_backtest_stops_it_at_the_next_progress_step(
    alice, btc, sent, django_capture_on_commit_callbacks, monkeypatch
):
    # given: the user cancels while the look-ahead check runs
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    real_check = backtest_services.lookahead_check

    def check_then_cancel(strategy: Any, candles: Any, **kwargs: Any) -> Any:
        services.backtest_cancel(backtest=reload(backtest), actor=alice)
        return real_check(strategy, candles, **kwargs)

    monkeypatch.setattr(backtest_services, "lookahead_check", check_then_cancel)
    # when
    done = run(backtest, django_capture_on_commit_callbacks)
    # then: it stopped without overwriting the status and stored nothing
    assert done.status == JobStatus.CANCELLED
    assert done.metrics == {} and done.equity == {} and done.error == ""
    assert not BacktestTrade.objects.filter(backtest=done).exists()


def test_a_cancel_landing_just_before_the_final_store_wins(
    alice, btc, sent, django_capture_on_commit_callbacks, monkeypatch
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    real = backtest_services.curves_downsample

    def downsample_then_cancel(**kwargs: Any) -> Any:
        services.backtest_cancel(backtest=reload(backtest), actor=alice)
        return real(**kwargs)

    monkeypatch.setattr(backtest_services, "curves_downsample", downsample_then_cancel)
    done = run(backtest, django_capture_on_commit_callbacks)
    assert done.status == JobStatus.CANCELLED and done.metrics == {}
    assert not BacktestTrade.objects.filter(backtest=done).exists()


def test_a_finished_backtest_cannot_be_cancelled(alice, btc, sent, django_capture_on_commit_callbacks):
    done = run(create(alice, btc, django_capture_on_commit_callbacks), django_capture_on_commit_callbacks)
    with pytest.raises(Conflict):
        services.backtest_cancel(backtest=done, actor=alice)
    assert reload(done).status == JobStatus.SUCCEEDED


def test_an_outsider_cannot_cancel_or_rerun(alice, mallory, btc, sent, django_capture_on_commit_callbacks):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    with pytest.raises(NotFound):
        services.backtest_cancel(backtest=backtest, actor=mallory)
    with pytest.raises(NotFound):
        services.backtest_rerun(backtest=backtest, actor=mallory)
    assert reload(backtest).status == JobStatus.QUEUED
    assert Backtest.objects.count() == 1


def test_staff_cancelling_someone_elses_backtest_is_audited(
    alice, staff, btc, sent, django_capture_on_commit_callbacks
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    services.backtest_cancel(backtest=backtest, actor=staff)
    event = AuditEvent.objects.get(action="backtest.cancelled")
    assert (event.actor_id, event.user_id, event.target_id) == (staff.pk, alice.pk, str(backtest.pk))


# --- re-run ---------------------------------------------------------------------------------------


def test_rerun_queues_a_new_backtest_of_the_same_spec(alice, btc, sent, django_capture_on_commit_callbacks):
    first = run(
        create(alice, btc, django_capture_on_commit_callbacks, params={"fast": 8, "slow": 21}),
        django_capture_on_commit_callbacks,
    )
    with django_capture_on_commit_callbacks(execute=True):
        again = services.backtest_rerun(backtest=first, actor=alice)
    assert again.pk != first.pk and again.rerun_of == first and again.status == JobStatus.QUEUED
    assert not AuditEvent.objects.filter(action="backtest.rerun").exists()  # the owner's own
    fields = ("strategy_key", "params", "rules", "instrument_id", "timeframe", "start_at", "end_at", "settings")
    assert [getattr(again, f) for f in fields] == [getattr(first, f) for f in fields]
    assert sent["backtest_run"][-1] == (again.pk,)
    assert run(again, django_capture_on_commit_callbacks).metrics == first.metrics


def test_rerun_of_a_rule_backtest_keeps_its_rules_after_the_rule_set_is_deleted(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    rule_set = strategy_services.rule_set_create(owner=alice, name="RSI dip", rules=ENTRY_RULES)
    first = create(
        alice, btc, django_capture_on_commit_callbacks, strategy_key="rules", params={}, rule_set_id=rule_set.pk
    )
    strategy_services.rule_set_delete(rule_set=rule_set)
    again = services.backtest_rerun(backtest=reload(first), actor=alice)
    assert again.rules == first.rules and again.rule_set is None
    assert run(again, django_capture_on_commit_callbacks).status == JobStatus.SUCCEEDED


def test_rerun_of_a_rule_backtest_keeps_its_snapshot_and_its_rule_set_after_an_edit(
    alice, btc, sent, django_capture_on_commit_callbacks
):
    rule_set = strategy_services.rule_set_create(owner=alice, name="RSI dip", rules=ENTRY_RULES)
    first = create(
        alice, btc, django_capture_on_commit_callbacks, strategy_key="rules", params={}, rule_set_id=rule_set.pk
    )
    edited = {**ENTRY_RULES, "exit_long": None}
    strategy_services.rule_set_update(rule_set=rule_set, name="RSI dip", rules=edited)
    again = services.backtest_rerun(backtest=reload(first), actor=alice)
    assert again.rule_set == rule_set and again.rules == first.rules != reload(rule_set).rules


# --- the reaper -----------------------------------------------------------------------------------


def test_the_reaper_fails_running_jobs_without_a_heartbeat_and_leaves_live_ones(
    alice, btc, sent, django_capture_on_commit_callbacks, settings, pushed: Pushed
):
    # given: two running backtests, one silent for longer than the time limit
    settings.BACKTEST_TIME_LIMIT_SECONDS = 600
    stale = create(alice, btc, django_capture_on_commit_callbacks)
    live = create(alice, btc, django_capture_on_commit_callbacks)
    now = timezone.now()
    Backtest.objects.filter(pk__in=[stale.pk, live.pk]).update(status=JobStatus.RUNNING)
    Backtest.objects.filter(pk=stale.pk).update(updated_at=now - timedelta(seconds=600 + 61 + 1))
    Backtest.objects.filter(pk=live.pk).update(updated_at=now - timedelta(seconds=30))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        reaped = services.jobs_reap(now=now)
    # then
    assert reaped["backtest"] == 1
    assert reload(stale).status == JobStatus.FAILED and "no progress for more than 600 s" in reload(stale).error
    assert reload(live).status == JobStatus.RUNNING
    assert pushed.of(alice)[-1] == {
        "kind": "backtest",
        "id": stale.pk,
        "status": "failed",
        "progress": 0.0,
        "error": reload(stale).error,
    }


def test_the_reaper_task_sends_lost_queued_jobs_again_once_per_period(
    alice, btc, sent: Sent, django_capture_on_commit_callbacks, settings
):
    settings.BACKTEST_REQUEUE_SECONDS = 600
    settings.EMBEDDED = True  # only the in-memory broker loses queued messages
    lost = create(alice, btc, django_capture_on_commit_callbacks)
    fresh = create(alice, btc, django_capture_on_commit_callbacks)
    Backtest.objects.filter(pk=lost.pk).update(updated_at=timezone.now() - timedelta(seconds=601))
    before = list(sent["backtest_run"])
    tasks.jobs_reap()
    assert sent["backtest_run"][len(before) :] == [(lost.pk,)]
    tasks.jobs_reap()  # its clock was reset: not sent again yet
    assert sent["backtest_run"][len(before) :] == [(lost.pk,)]
    assert reload(fresh).status == reload(lost).status == JobStatus.QUEUED


def test_with_a_broker_that_keeps_messages_the_reaper_sends_nothing_again(
    alice, btc, sent: Sent, django_capture_on_commit_callbacks, settings
):
    settings.BACKTEST_REQUEUE_SECONDS = 600
    settings.EMBEDDED = False
    waiting = create(alice, btc, django_capture_on_commit_callbacks)
    Backtest.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - timedelta(seconds=3600))
    before = list(sent["backtest_run"])
    tasks.jobs_reap()
    assert sent["backtest_run"][len(before) :] == []
    assert reload(waiting).status == JobStatus.QUEUED


def test_an_optimisation_waiting_for_queued_chunks_outlives_the_time_limit(
    alice, btc, django_capture_on_commit_callbacks, settings
):
    # given: an optimisation whose last stored chunk was 31 minutes ago (its other chunks wait
    # in the queue behind other users' work), and a backtest silent for as long
    settings.BACKTEST_TIME_LIMIT_SECONDS = 1800
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    now = timezone.now()
    optimisation = Optimisation.objects.create(
        owner=alice, strategy_key="sma_cross", instrument=btc, timeframe="1h", status=JobStatus.RUNNING
    )
    silent = create(alice, btc, django_capture_on_commit_callbacks)
    Backtest.objects.filter(pk=silent.pk).update(status=JobStatus.RUNNING)
    for model, pk in ((Optimisation, optimisation.pk), (Backtest, silent.pk)):
        model.objects.filter(pk=pk).update(updated_at=now - timedelta(seconds=1800 + 61 + 1))
    # when
    reaped = services.jobs_reap(now=now)
    # then: the backtest's worker is dead; the optimisation is only waiting
    assert (reaped["backtest"], reaped["optimisation"]) == (1, 0)
    assert reload(optimisation).status == JobStatus.RUNNING
    # and once even a lost chunk would have been redelivered and timed out, it is given up
    later = now + timedelta(seconds=3600 + 1800)
    assert services.jobs_reap(now=later)["optimisation"] == 1
    assert reload(optimisation).status == JobStatus.FAILED


def test_a_job_past_its_time_limit_is_failed_at_its_next_progress_step(
    alice, btc, sent, django_capture_on_commit_callbacks, settings, pushed: Pushed
):
    # The embedded thread pool ignores Celery's time limits: the job itself keeps the limit.
    settings.BACKTEST_TIME_LIMIT_SECONDS = 600
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    job = jobs.job_claim(Backtest, backtest.pk)
    assert job is not None
    job.started_at = timezone.now() - timedelta(seconds=601)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(jobs.JobStopped):
        jobs.job_progress(job, 0.5)
    assert reload(backtest).status == JobStatus.FAILED
    assert reload(backtest).error == "The job took longer than the time limit (600 s)."


def test_a_job_reaped_while_its_worker_was_only_slow_stops_without_storing(
    alice, btc, sent, django_capture_on_commit_callbacks, monkeypatch
):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    real = backtest_services.run_backtest

    def slow_engine(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        Backtest.objects.filter(pk=backtest.pk).update(status=JobStatus.FAILED, error="reaped")
        return result

    monkeypatch.setattr(backtest_services, "run_backtest", slow_engine)
    done = run(backtest, django_capture_on_commit_callbacks)
    assert (done.status, done.error, done.metrics) == (JobStatus.FAILED, "reaped", {})


def test_the_beat_schedule_runs_the_reaper_on_the_default_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["backtests-jobs-reap"]
    assert entry["task"] == tasks.jobs_reap.name == "apps.backtests.tasks.jobs_reap"
    assert entry["options"]["queue"] == "default"
    # a running job is never handed to a second worker: the hard limit ends it first
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert tasks.backtest_run.soft_time_limit < tasks.backtest_run.time_limit < visibility


def test_progress_outside_a_running_job_raises_job_stopped(alice, btc, sent, django_capture_on_commit_callbacks):
    backtest = create(alice, btc, django_capture_on_commit_callbacks)
    with pytest.raises(jobs.JobStopped):
        jobs.job_progress(backtest, 0.5)
    assert reload(backtest).progress == 0.0
