"""The backtests admin: lists with owner, strategy, status, progress and metrics; filters and
search; read-only results; "Re-run" and "Cancel" through the services."""

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.backtests import services, tasks
from apps.backtests.models import Backtest, JobStatus, MonteCarlo, Optimisation, WalkForward
from apps.marketdata import services as market_services
from tests.backtests.platform_support import Sent, reload, run_spec
from tests.factories import UserFactory
from tests.users.steps import verified_client

pytestmark = pytest.mark.django_db

SPACE = {"fast": {"low": 5, "high": 20, "step": 5}, "slow": {"low": 30, "high": 60, "step": 10}}


@pytest.fixture
def staff_client(staff, enable_2fa):
    return verified_client(staff, enable_2fa(staff))


@pytest.fixture
def jobs(alice, btc, sent, settings, django_capture_on_commit_callbacks) -> dict[str, Any]:
    """One finished job of each kind and one queued backtest, all alice's."""
    settings.OPTIMISATION_GRID_CHUNK = 16
    done = services.backtest_create(owner=alice, name="finished", **run_spec(btc))
    queued = services.backtest_create(owner=alice, name="waiting", **run_spec(btc, params={"fast": 12, "slow": 40}))
    research = {**run_spec(btc, params={}), "method": "grid", "objective": "sharpe", "space": SPACE, "min_trades": 1}
    optimisation = services.optimisation_create(owner=alice, n_trials=10, **research)
    walk_forward = services.walk_forward_create(
        owner=alice, mode="rolling", windows_count=2, train_ratio=0.7, n_trials=10, **research
    )
    with django_capture_on_commit_callbacks(execute=True):
        tasks.backtest_run(done.pk)
        tasks.optimisation_run(optimisation.pk)
        tasks.optimisation_chunk_run(optimisation.pk, 0)
    monte_carlo = services.monte_carlo_create(
        owner=alice, backtest=reload(done), method="resample", simulations=200, noise=0.0, seed=1, loss_threshold=0.2
    )
    return {
        "done": reload(done),
        "queued": queued,
        "optimisation": reload(optimisation),
        "walk_forward": walk_forward,
        "monte_carlo": monte_carlo,
    }


@pytest.mark.parametrize(
    "model,kind",
    [
        ("backtest", "done"),
        ("optimisation", "optimisation"),
        ("walkforward", "walk_forward"),
        ("montecarlo", "monte_carlo"),
    ],
)
def test_lists_and_detail_pages_render_read_only(staff_client, jobs, model, kind, django_assert_max_num_queries):
    with django_assert_max_num_queries(20):
        listing = staff_client.get(f"/admin/backtests/{model}/")
    assert listing.status_code == 200
    assert "alice@example.com" in listing.content.decode()
    detail = staff_client.get(f"/admin/backtests/{model}/{jobs[kind].pk}/change/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert 'name="status"' not in body and 'name="params"' not in body  # facts, not a form
    assert staff_client.get(f"/admin/backtests/{model}/add/").status_code == 403


def test_monte_carlo_list_reads_probability_of_loss_without_a_query_per_row(
    staff_client, alice, django_assert_max_num_queries
):
    # given: finished Monte Carlo runs whose results hold a big sample of paths besides P(loss)
    instrument = market_services.instrument_get_or_create(venue="binance", symbol="BTC/USDT")
    backtest = Backtest.objects.create(
        owner=alice, strategy_key="sma_cross", instrument=instrument, timeframe="1h", status=JobStatus.SUCCEEDED
    )

    def add_runs(count: int, start: int) -> None:
        for number in range(start, start + count):
            results = {"probability_of_loss": number / 100 + 0.0012, "paths": {"equity": [[1.0] * 500] * 20}}
            MonteCarlo.objects.create(owner=alice, backtest=backtest, status=JobStatus.SUCCEEDED, results=results)

    add_runs(1, start=1)
    staff_client.get("/admin/backtests/montecarlo/")  # warm the session and caches
    with CaptureQueriesContext(connection) as one_row:
        first = staff_client.get("/admin/backtests/montecarlo/")
    assert first.status_code == 200 and "1.12 %" in first.content.decode()

    # when: nine more rows
    add_runs(9, start=2)
    with django_assert_max_num_queries(len(one_row.captured_queries)):
        listing = staff_client.get("/admin/backtests/montecarlo/")

    # then: as many queries as for one row, and every row shows its probability of loss
    body = listing.content.decode()
    assert listing.status_code == 200
    assert all(f"{number + 0.12:.2f} %" in body for number in range(1, 11))
    # The column sorts by the annotated value.
    ordered = staff_client.get("/admin/backtests/montecarlo/", {"o": "8"}).content.decode()
    assert ordered.index("1.12 %") < ordered.index("10.12 %")


def test_backtest_list_shows_key_metrics_and_filters(staff_client, jobs):
    done = jobs["done"]
    body = staff_client.get("/admin/backtests/backtest/").content.decode()
    assert f"{done.metrics['total_return'] * 100:.2f} %" in body
    assert f"{done.metrics['sharpe']:.2f}" in body
    queued_only = staff_client.get("/admin/backtests/backtest/", {"status__exact": "queued"}).content.decode()
    assert "waiting" in queued_only and "finished" not in queued_only
    by_strategy = staff_client.get("/admin/backtests/backtest/", {"strategy_key": "ema_cross"})
    assert by_strategy.status_code == 200
    by_tf = staff_client.get("/admin/backtests/backtest/", {"timeframe__exact": "1h"}).content.decode()
    assert "waiting" in by_tf and "finished" in by_tf


def test_search_by_id_and_owner_email(staff_client, jobs, bob, btc, sent):
    services.backtest_create(owner=bob, name="bobs", **run_spec(btc))
    by_email = staff_client.get("/admin/backtests/backtest/", {"q": "bob@example.com"}).content.decode()
    assert "bobs" in by_email and "waiting" not in by_email
    by_id = staff_client.get("/admin/backtests/backtest/", {"q": str(jobs["queued"].pk)}).content.decode()
    assert "waiting" in by_id and "bobs" not in by_id


def test_optimisation_detail_shows_its_trials(staff_client, jobs):
    optimisation = jobs["optimisation"]
    assert optimisation.status == JobStatus.SUCCEEDED
    body = staff_client.get(f"/admin/backtests/optimisation/{optimisation.pk}/change/").content.decode()
    assert "Optimisation trials" in body
    best = (
        f"{{&quot;fast&quot;: {optimisation.best_params['fast']}, &quot;slow&quot;: {optimisation.best_params['slow']}"
    )
    assert best in body


def test_cancel_action_cancels_queued_jobs_through_the_service_and_audits(staff_client, staff, alice, jobs):
    response = staff_client.post(
        "/admin/backtests/backtest/",
        {"action": "cancel_jobs", "_selected_action": [jobs["queued"].pk, jobs["done"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Cancelled 1 job(s)." in response.content.decode()
    assert reload(jobs["queued"]).status == JobStatus.CANCELLED
    assert reload(jobs["done"]).status == JobStatus.SUCCEEDED
    event = AuditEvent.objects.get(action="backtest.cancelled")
    assert (event.actor_id, event.user_id) == (staff.pk, alice.pk)


@pytest.mark.parametrize("model,kind", [("walkforward", "walk_forward"), ("montecarlo", "monte_carlo")])
def test_cancel_action_on_research_jobs(staff_client, jobs, model, kind):
    staff_client.post(f"/admin/backtests/{model}/", {"action": "cancel_jobs", "_selected_action": [jobs[kind].pk]})
    assert reload(jobs[kind]).status == JobStatus.CANCELLED


def test_rerun_action_queues_a_copy_for_the_owner(
    staff_client, staff, alice, jobs, sent: Sent, django_capture_on_commit_callbacks
):
    before = len(sent["backtest_run"])
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/backtests/backtest/",
            {"action": "rerun_backtests", "_selected_action": [jobs["done"].pk]},
            follow=True,
        )
    assert "Queued 1 re-run(s)." in response.content.decode()
    rerun = Backtest.objects.get(rerun_of=jobs["done"])
    assert rerun.owner == alice and rerun.status == JobStatus.QUEUED and rerun.params == jobs["done"].params
    assert sent["backtest_run"][before:] == [(rerun.pk,)]
    event = AuditEvent.objects.get(action="backtest.rerun")
    assert (event.actor_id, event.user_id, event.target_id) == (staff.pk, alice.pk, str(rerun.pk))


def test_staff_who_may_only_view_cannot_run_actions(jobs, enable_2fa):
    viewer = UserFactory(email="viewer@example.com", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_backtest"))
    client = verified_client(viewer, enable_2fa(viewer))
    listing = client.get("/admin/backtests/backtest/")
    assert listing.status_code == 200 and "cancel_jobs" not in listing.content.decode()
    client.post("/admin/backtests/backtest/", {"action": "cancel_jobs", "_selected_action": [jobs["queued"].pk]})
    assert reload(jobs["queued"]).status == JobStatus.QUEUED


def test_outsiders_cannot_open_the_admin(client, mallory, jobs):
    client.force_login(mallory)
    assert client.get("/admin/backtests/backtest/").status_code == 302
    assert Optimisation.objects.count() == WalkForward.objects.count() == MonteCarlo.objects.count() == 1
