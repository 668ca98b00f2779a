"""The backtests list, the backtest form and result page, and its downloads (the HTML report
and the CSV of trades). While a backtest is queued or running its page shows a progress bar that
static/js/backtest_live.js moves from the websocket's ``job.progress`` events (with a status
poll as a fallback) and reloads into the results when it finishes."""

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.backtests import reports, selectors, services
from apps.backtests.forms import BacktestForm
from apps.backtests.models import Backtest, JobStatus
from apps.backtests.views.shared import (
    LIST_RECENT,
    chart_curves,
    default_initial,
    finished_backtest,
    form_kwargs,
    form_page_context,
    job_context,
    or_404,
    status_payload,
)
from apps.common.errors import ApplicationError
from apps.users.requests import AuthenticatedHttpRequest

PAGE_SIZE = 25
TRADES_PAGE_SIZE = 50
CHART_BARS = 5000  # candles drawn under the trade markers: the newest of the range
CHART_MARKER_TRADES = 1000  # the newest trades get entry/exit markers
CSV_CHUNK_LINES = 1000


# --- the list -------------------------------------------------------------------------------------


def backtest_row(backtest: Backtest) -> dict[str, Any]:
    metrics = backtest.metrics or {}
    return {
        "backtest": backtest,
        "progress_pct": round(backtest.progress * 100),
        "total_return": reports.format_value(metrics.get("total_return"), "pct"),
        "return_tone": reports.tone(metrics.get("total_return")),
        "sharpe": reports.format_value(metrics.get("sharpe"), "ratio"),
        "max_drawdown": reports.format_value(metrics.get("max_drawdown"), "pct"),
    }


@login_required
def backtest_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    page = Paginator(selectors.backtest_list_for_user(user=user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "backtests/list.html",
        {
            "page": page,
            "rows": [backtest_row(b) for b in page],
            "optimisations": list(selectors.optimisation_list_for_user(user=user)[:LIST_RECENT]),
            "walk_forwards": list(selectors.walk_forward_list_for_user(user=user)[:LIST_RECENT]),
            "monte_carlos": list(selectors.monte_carlo_list_for_user(user=user)[:LIST_RECENT]),
        },
    )


# --- backtests ------------------------------------------------------------------------------------


@login_required
def backtest_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    kwargs = form_kwargs(request)
    if request.method == "POST":
        form = BacktestForm(request.POST, **kwargs)
        if form.is_valid():
            try:
                backtest = services.backtest_create(owner=request.user, **form.run_spec())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                return redirect("backtests:detail", backtest_id=backtest.pk)
    else:
        form = BacktestForm(**kwargs, initial=default_initial(request, kwargs))
    return render(request, "backtests/new.html", form_page_context(form, kwargs))


def _epoch_s(value: Any) -> int | None:
    return int(value.timestamp()) if value is not None else None


def _chart_config(backtest: Backtest) -> dict[str, Any]:
    """Curves and markers for backtest.js; candles are fetched from the candles API (the
    newest CHART_BARS bars of the range)."""
    curves = backtest.equity or {}
    times = curves.get("t") or []
    end = _epoch_s(backtest.end_at)
    if end is None and times:
        end = int(times[-1] // 1000) + 1
    trades = list(selectors.backtest_trades(backtest=backtest).order_by("-number")[:CHART_MARKER_TRADES])
    markers = [
        {
            "side": t.side,
            "entry": _epoch_s(t.entry_at),
            "entryPrice": t.entry_price,
            "exit": _epoch_s(t.exit_at),
            "exitPrice": t.exit_price,
            "pnl": t.pnl,
            "reason": t.exit_reason,
        }
        for t in reversed(trades)
    ]
    return {
        "curves": chart_curves(curves),
        "candlesUrl": reverse("api:instrument-candles", args=[backtest.instrument_id]),
        "timeframe": backtest.timeframe,
        "start": _epoch_s(backtest.start_at) or (int(times[0] // 1000) if times else None),
        "end": end,
        "limit": CHART_BARS,
        "bars": backtest.candles_count,
        "markers": markers,
        "tickSize": float(backtest.instrument.tick_size) if backtest.instrument.tick_size else None,
    }


@login_required
def backtest_detail(request: AuthenticatedHttpRequest, backtest_id: int) -> HttpResponse:
    backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=backtest_id)
    context: dict[str, Any] = {
        "backtest": backtest,
        "lookahead": reports.lookahead_status(backtest),
        **job_context("backtest", backtest, reverse("backtests:status", args=[backtest.pk])),
    }
    if backtest.status == JobStatus.SUCCEEDED:
        trades = Paginator(selectors.backtest_trades(backtest=backtest), TRADES_PAGE_SIZE)
        page = trades.get_page(request.GET.get("page"))
        context.update(
            metrics=reports.metric_rows(backtest),
            trades_page=page,
            trades=[reports.trade_row(t) for t in page],
            chart_config=_chart_config(backtest),
            chart_capped=backtest.candles_count > CHART_BARS,
            chart_bars=CHART_BARS,
            monte_carlos=list(
                selectors.monte_carlo_list_for_user(user=request.user, filters={"backtest": backtest.pk})[:LIST_RECENT]
            ),
        )
    return render(request, "backtests/detail.html", context)


@login_required
def backtest_status(request: AuthenticatedHttpRequest, backtest_id: int) -> JsonResponse:
    backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=backtest_id)
    return JsonResponse(status_payload("backtest", backtest))


@login_required
@require_POST
def backtest_cancel(request: AuthenticatedHttpRequest, backtest_id: int) -> HttpResponse:
    backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=backtest_id)
    try:
        services.backtest_cancel(backtest=backtest, actor=request.user)
        messages.success(request, "Backtest cancelled.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("backtests:detail", backtest_id=backtest.pk)


@login_required
@require_POST
def backtest_rerun(request: AuthenticatedHttpRequest, backtest_id: int) -> HttpResponse:
    backtest = or_404(selectors.backtest_get_for_user, user=request.user, backtest_id=backtest_id)
    try:
        rerun = services.backtest_rerun(backtest=backtest, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("backtests:detail", backtest_id=backtest.pk)
    return redirect("backtests:detail", backtest_id=rerun.pk)


@login_required
def backtest_report(request: AuthenticatedHttpRequest, backtest_id: int) -> HttpResponse:
    backtest = finished_backtest(request, backtest_id)
    response = HttpResponse(reports.backtest_report_html(backtest), content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{reports.report_filename(backtest, "html")}"'
    return response


def _take(lines: Iterator[str], count: int) -> str:
    return "".join(itertools.islice(lines, count))


async def _async_chunks(lines: Iterator[str], count: int = CSV_CHUNK_LINES) -> AsyncIterator[str]:
    """A sync iterator (reading the database) as an async one for the ASGI server, which
    would otherwise buffer a sync stream whole. Every step runs in Django's one sync thread,
    where the iterator's connection and cursor live."""
    take = sync_to_async(_take, thread_sensitive=True)
    while chunk := await take(lines, count):
        yield chunk


@login_required
def backtest_trades_csv(request: AuthenticatedHttpRequest, backtest_id: int) -> StreamingHttpResponse:
    backtest = finished_backtest(request, backtest_id)
    lines = reports.backtest_trades_csv(backtest)
    content = _async_chunks(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{reports.report_filename(backtest, "csv")}"'
    return response
