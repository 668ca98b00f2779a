"""The trading metrics (apps/common/metrics.py) move when the real services run, `/metrics`
exports them, and the Grafana dashboard queries only what is exported.

Values are read from prometheus_client's default registry before and after (other tests in the
same process move them too, so only differences are compared)."""

# ruff: noqa: F811 - fixtures are imported from their support modules

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.db import transaction
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from apps.common import metrics
from apps.strategies.models import Signal
from apps.strategies.services import deployments as deployment_services
from apps.trades.models import Order
from apps.trades.services.orders import order_send, order_submit
from tests.conftest import free_port
from tests.marketplace.fanout_support import leader_fill, make_follower, make_leader
from tests.strategies.deploy_support import (  # noqa: F401 - fixtures
    deployment_kwargs,
    feed_bar,
    market,
    next_bars,
    paper_account,
    ticks_inline,
)
from tests.trades.execution_support import (  # noqa: F401 - fixtures
    D,
    btc,
    close_bar,
    exchange,
    fernet,
    intent,
    paper,
    paper_btc,
    queued,
    venue,
)

REPO = Path(__file__).resolve().parent.parent.parent
DASHBOARD = REPO / "ops" / "grafana" / "trading-dashboard.json"


@pytest.fixture(autouse=True)
def _orders_not_counted_yet() -> None:
    """Order ids repeat from test to test (rolled back); the per-process record of the status
    each order was counted in is for ids that do not."""
    metrics._ORDER_STATUS_SEEN.clear()


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Sample values at creation; ``moved(name, **labels)`` is the change since."""

    def __init__(self, *samples: tuple[str, dict[str, str]]):
        self.before = {(name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples}

    def moved(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self.before[(name, tuple(sorted(labels.items())))]


# --- orders and fills -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_paper_order_and_its_fill_move_orders_fills_and_send_latency(
    paper: Any, paper_btc: Any, queued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    delta = Delta(
        ("tp_orders_total", {"status": "open", "source": "strategy"}),
        ("tp_orders_total", {"status": "filled", "source": "strategy"}),
        ("tp_fills_total", {"source": "strategy"}),
        ("tp_order_send_seconds_count", {"kind": "paper"}),
    )
    # when: a market order, accepted by the paper venue at once, then filled at the next bar
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(intent=intent(paper, paper_btc, quantity=D("1"), expected_price=D("100")))
    assert order.status == Order.Status.OPEN
    assert delta.moved("tp_orders_total", status="open", source="strategy") == 1
    assert delta.moved("tp_order_send_seconds_count", kind="paper") == 1
    assert delta.moved("tp_fills_total", source="strategy") == 0

    with django_capture_on_commit_callbacks(execute=True):
        close_bar(paper_btc, 1, 101, 102, 100, 101)

    # then
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert delta.moved("tp_fills_total", source="strategy") == 1
    assert delta.moved("tp_orders_total", status="filled", source="strategy") == 1


@pytest.mark.django_db
def test_a_rolled_back_order_counts_nothing(
    paper: Any, paper_btc: Any, queued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    delta = Delta(
        ("tp_orders_total", {"status": "open", "source": "manual"}),
        ("tp_order_send_seconds_count", {"kind": "paper"}),
    )
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        order_submit(intent=intent(paper, paper_btc, quantity=D("1"), expected_price=D("100"), source="manual"))
        raise RuntimeError("rolled back")

    assert not Order.objects.exists()
    assert delta.moved("tp_orders_total", status="open", source="manual") == 0
    assert delta.moved("tp_order_send_seconds_count", kind="paper") == 0


@pytest.mark.django_db
def test_an_order_sent_to_a_venue_observes_created_to_accepted(
    exchange: Any, btc: Any, venue: Any, queued: Any, django_capture_on_commit_callbacks: Any
) -> None:
    delta = Delta(
        ("tp_order_send_seconds_count", {"kind": "ccxt"}),
        ("tp_order_send_seconds_sum", {"kind": "ccxt"}),
        ("tp_orders_total", {"status": "new", "source": "strategy"}),
        ("tp_orders_total", {"status": "filled", "source": "strategy"}),
    )
    with django_capture_on_commit_callbacks(execute=True):
        order = order_submit(intent=intent(exchange, btc, quantity=D("0.01")))
    with django_capture_on_commit_callbacks(execute=True):
        order_send(order_id=order.pk)

    assert venue.post_count(order.client_order_id) == 1
    assert delta.moved("tp_orders_total", status="new", source="strategy") == 1
    assert delta.moved("tp_orders_total", status="filled", source="strategy") == 1
    assert delta.moved("tp_order_send_seconds_count", kind="ccxt") == 1
    assert 0 < delta.moved("tp_order_send_seconds_sum", kind="ccxt") < 30


# --- ticks and signals ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_tick_that_orders_moves_ticks_signals_and_tick_to_order_latency(
    market: Any, paper_account: Any, ticks_inline: Any, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = deployment_services.deployment_create(**deployment_kwargs(market, paper_account))
    deployment_services.deployment_start(deployment=deployment, mode="paper")
    delta = Delta(
        ("tp_deployment_ticks_total", {"outcome": "order"}),
        ("tp_signals_total", {"action": "enter_long", "source": "strategy"}),
        ("tp_tick_to_order_seconds_count", {}),
        ("tp_orders_total", {"status": "open", "source": "strategy"}),
    )
    # when a bar the strategy enters long on closes (tests/strategies/test_tick.py)
    feed_bar(market, next_bars(1), django_capture_on_commit_callbacks)

    assert Signal.objects.get(deployment=deployment).action == Signal.Action.ENTER_LONG
    assert delta.moved("tp_deployment_ticks_total", outcome="order") == 1
    assert delta.moved("tp_signals_total", action="enter_long", source="strategy") == 1
    assert delta.moved("tp_tick_to_order_seconds_count") == 1
    assert delta.moved("tp_orders_total", status="open", source="strategy") == 1


# --- the copy fan-out -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_fanout_chunk_observes_its_duration_and_counts_copies(alice: Any, paper_btc: Any) -> None:
    from apps.marketplace.services import fanout

    _, deployment, listing = make_leader(alice, paper_btc)
    subs = [make_follower(listing, n) for n in range(3)]
    fill = leader_fill(deployment, paper_btc, side="buy", quantity="2", bar=1, price=100)
    delta = Delta(("tp_copy_fanout_chunk_seconds_count", {}), ("tp_copies_total", {"status": "ordered"}))

    counts = fanout.copy_fanout_chunk(leader_fill_id=fill.pk, subscription_ids=[s.pk for s in subs])

    assert counts == {"ordered": 3}
    assert delta.moved("tp_copy_fanout_chunk_seconds_count") == 1
    assert delta.moved("tp_copies_total", status="ordered") == 3


# --- Celery task failures -------------------------------------------------------------------


@current_app.task(name="tests.common.test_metrics.always_fails", ignore_result=True)
def always_fails() -> None:
    raise ValueError("boom")


def test_a_task_that_raises_is_counted_by_name() -> None:
    name = "tests.common.test_metrics.always_fails"
    before = value("tp_celery_task_failures_total", task=name)

    result = always_fails.apply()

    assert result.failed()
    assert value("tp_celery_task_failures_total", task=name) - before == 1


# --- queue depth ----------------------------------------------------------------------------


@pytest.mark.redis
def test_queue_depth_is_read_from_the_broker_at_scrape_time(client: Any) -> None:
    # given: messages waiting in two queues (no worker consumes in this process)
    for _ in range(3):
        current_app.send_task("tests.nobody.listens", queue="ticks")
    current_app.send_task("tests.nobody.listens", queue="orders")

    # then
    assert metrics.QUEUE_DEPTH.lengths() == {"default": 0, "ticks": 3, "orders": 1, "backtests": 0, "ml": 0}
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").content.decode())}
    samples = {s.labels["queue"]: s.value for s in families["tp_celery_queue_length"].samples}
    assert samples == {"default": 0, "ticks": 3, "orders": 1, "backtests": 0, "ml": 0}


@pytest.mark.redis
def test_queue_depth_counts_prioritised_messages_too() -> None:
    current_app.send_task("tests.nobody.listens", queue="orders", priority=5)

    assert metrics.QUEUE_DEPTH.lengths()["orders"] == 1


def test_queue_depth_reports_nothing_without_a_redis_broker() -> None:
    collector = metrics.QueueDepthCollector(queues=["ticks"], broker_url="memory://")

    [family] = list(collector.collect())

    assert family.name == "tp_celery_queue_length"
    assert family.samples == []


def test_queue_depth_of_a_broker_that_is_down_does_not_fail_the_scrape() -> None:
    collector = metrics.QueueDepthCollector(queues=["ticks"], broker_url=f"redis://127.0.0.1:{free_port()}/0")

    [family] = list(collector.collect())

    assert family.samples == []


# --- /metrics and the dashboard -------------------------------------------------------------


def _declared_families() -> set[str]:
    """The family names the exposition's ``# TYPE`` lines carry for the platform's metrics."""
    names = {metrics.QUEUE_LENGTH}
    for name, metric in metrics.PLATFORM_METRICS.items():
        names.add(name + "_total" if metric._type == "counter" else name)
    return names


@pytest.mark.django_db
def test_the_metrics_endpoint_exports_every_platform_metric(client: Any) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    typed = set(re.findall(r"^# TYPE (\S+) ", response.content.decode(), flags=re.MULTILINE))
    assert _declared_families() <= typed
    assert "django_http_requests_total_by_method_total" in typed  # django-prometheus' own, still there


def test_every_platform_metric_is_declared_in_one_module() -> None:
    assert set(metrics.PLATFORM_METRICS) == {
        "tp_deployment_ticks",
        "tp_signals",
        "tp_orders",
        "tp_fills",
        "tp_order_send_seconds",
        "tp_tick_to_order_seconds",
        "tp_copy_fanout_chunk_seconds",
        "tp_copies",
        "tp_celery_task_failures",
        "tp_websocket_connections",
    }
    for name in metrics.PLATFORM_METRICS:
        assert REGISTRY._names_to_collectors[name] is metrics.PLATFORM_METRICS[name]  # registered once


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}


def metric_names_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects (label matchers, grouping labels, ranges,
    strings and function names left out)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        following = expr[match.end() :].lstrip()
        if following.startswith("(") or match.group() in _PROMQL_WORDS:
            continue  # a function or an operator
        names.add(match.group())
    return names


def test_the_dashboard_is_grafana_json_querying_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())

    assert dashboard["title"] and dashboard["uid"] and dashboard["panels"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = set().union(*(metric_names_in(e) for e in exprs))
    assert used, exprs
    assert used <= metrics.exported_names(), used - metrics.exported_names()
    # every platform metric is on it
    for name in [*metrics.PLATFORM_METRICS, metrics.QUEUE_LENGTH]:
        assert any(u == name or u.startswith(name + "_") for u in used), name
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_metric_names_in_reads_promql() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, kind) (rate(tp_order_send_seconds_bucket{kind="paper"}[5m])))'
    assert metric_names_in(expr) == {"tp_order_send_seconds_bucket"}
    assert metric_names_in("sum(a_total) / sum(b_count)") == {"a_total", "b_count"}


# --- several processes ----------------------------------------------------------------------

_CHILD = """
import sys
from apps.common import metrics
metrics.ORDERS.labels(status="filled", source="copy").inc(int(sys.argv[1]))
metrics.WEBSOCKET_CONNECTIONS.inc()
"""


def test_multiprocess_mode_sums_every_process_of_every_container(tmp_path: Path) -> None:
    # given: three processes in two containers' folders, in prometheus_client's multiprocess mode
    root = tmp_path / "prometheus"
    for folder, amount in (("web", 1), ("worker", 2), ("worker", 4)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        env = {"PROMETHEUS_MULTIPROC_DIR": str(root / folder), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", _CHILD, str(amount)], cwd=REPO, env=env, check=True, timeout=60)

    # when the files are read as /metrics reads them
    registry = metrics.CollectorRegistry()
    registry.register(metrics.ProcessFilesCollector(str(root)))

    # then the counters are summed over the processes; the live gauges of the ended ones too
    # until their processes are marked dead (a worker does that for its pool children)
    assert registry.get_sample_value("tp_orders_total", {"status": "filled", "source": "copy"}) == 7
    assert registry.get_sample_value("tp_websocket_connections", {}) == 3
