"""Research pages built on backtests: the optimisation form and page (best parameters, the
trials sorted by value, a heat map over two parameters, "backtest the best"), the walk-forward
form and page (windows, stitched out-of-sample equity, degradation) and Monte Carlo (from a
finished backtest: distributions, percentiles, probabilities of loss, a fan of paths)."""

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F, OrderBy
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.backtests import reports, selectors, services
from apps.backtests.forms import MonteCarloForm, OptimisationForm, WalkForwardForm
from apps.backtests.models import JobStatus, Optimisation, OptimisationTrial
from apps.backtests.views.shared import (
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

TRIALS_PAGE_SIZE = 50


# --- optimisations --------------------------------------------------------------------------------


def _research_new(
    request: AuthenticatedHttpRequest,
    form_cls: type[OptimisationForm],
    create: Callable[..., Any],
    detail: str,
    template: str,
) -> HttpResponse:
    kwargs = form_kwargs(request)
    if request.method == "POST":
        form = form_cls(request.POST, **kwargs)
        if form.is_valid():
            try:
                job = create(owner=request.user, **form.run_spec(), **form.research_spec())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                return redirect(detail, job.pk)
    else:
        form = form_cls(**kwargs, initial=default_initial(request, kwargs))
    return render(request, template, form_page_context(form, kwargs))


@login_required
def optimisation_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _research_new(
        request, OptimisationForm, services.optimisation_create, "backtests:optimisation-detail",
        "backtests/optimisation_new.html",
    )  # fmt: skip


# Infeasible trials (no value) sort last whichever way the values are sorted.
TRIAL_SORTS: dict[str, tuple[OrderBy | str, ...]] = {
    "-value": (F("value").desc(nulls_last=True), "number"),
    "value": (F("value").asc(nulls_last=True), "number"),
    "number": ("number",),
}


def _heatmap_context(request: AuthenticatedHttpRequest, optimisation: Optimisation) -> dict[str, Any]:
    """The heat map of the objective over two parameters (``?x=&y=``, by default the first two
    searched), as rows of coloured cells with a legend."""
    names = list(optimisation.space or {}) or sorted(optimisation.best_params or {})
    if len(names) < 2:
        return {"heatmap": None, "heatmap_params": names}
    asked_x, asked_y = request.GET.get("x", ""), request.GET.get("y", "")
    x = asked_x if asked_x in names else names[0]
    y = asked_y if asked_y in names and asked_y != x else next(n for n in names if n != x)
    try:
        grid = selectors.optimisation_heatmap(optimisation=optimisation, x=x, y=y)
    except ApplicationError as exc:
        return {"heatmap": None, "heatmap_params": names, "heatmap_error": exc.message}
    return {"heatmap": reports.heatmap_table(grid, x=x, y=y), "heatmap_params": names}


@login_required
def optimisation_detail(request: AuthenticatedHttpRequest, optimisation_id: int) -> HttpResponse:
    optimisation = or_404(selectors.optimisation_get_for_user, user=request.user, optimisation_id=optimisation_id)
    sort = request.GET.get("sort", "-value")
    sort = sort if sort in TRIAL_SORTS else "-value"
    trials = selectors.optimisation_trials(optimisation=optimisation).order_by(*TRIAL_SORTS[sort])
    page = Paginator(trials, TRIALS_PAGE_SIZE).get_page(request.GET.get("page"))
    context: dict[str, Any] = {
        "optimisation": optimisation,
        "sort": sort,
        "trials_page": page,
        "trials": [_trial_row(t) for t in page],
        "best_metrics": reports.metric_table(optimisation.best_metrics or {}),
        "best_params": sorted((optimisation.best_params or {}).items()),
        "job_detail": f"{optimisation.trials_done} of up to {optimisation.n_trials} trials done.",
        **job_context("optimisation", optimisation, reverse("backtests:optimisation-status", args=[optimisation.pk])),
    }
    if optimisation.trials_done or optimisation.is_finished:
        context.update(_heatmap_context(request, optimisation))
    return render(request, "backtests/optimisation_detail.html", context)


def _trial_row(trial: OptimisationTrial) -> dict[str, Any]:
    metrics = trial.metrics or {}
    return {
        "trial": trial,
        "params": sorted((trial.params or {}).items()),
        "value": "infeasible" if trial.value is None else f"{trial.value:,.4f}",
        "total_return": reports.format_value(metrics.get("total_return"), "pct"),
        "return_tone": reports.tone(metrics.get("total_return")),
        "max_drawdown": reports.format_value(metrics.get("max_drawdown"), "pct"),
        "trades": reports.format_value(metrics.get("trades"), "int"),
    }


@login_required
def optimisation_status(request: AuthenticatedHttpRequest, optimisation_id: int) -> JsonResponse:
    optimisation = or_404(selectors.optimisation_get_for_user, user=request.user, optimisation_id=optimisation_id)
    return JsonResponse({**status_payload("optimisation", optimisation), "trialsDone": optimisation.trials_done})


@login_required
@require_POST
def optimisation_cancel(request: AuthenticatedHttpRequest, optimisation_id: int) -> HttpResponse:
    optimisation = or_404(selectors.optimisation_get_for_user, user=request.user, optimisation_id=optimisation_id)
    try:
        services.optimisation_cancel(optimisation=optimisation, actor=request.user)
        messages.success(request, "Optimisation cancelled.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("backtests:optimisation-detail", optimisation.pk)


@login_required
@require_POST
def optimisation_backtest_best(request: AuthenticatedHttpRequest, optimisation_id: int) -> HttpResponse:
    """Backtest the best parameters found, on the optimisation's own market and settings."""
    optimisation = or_404(selectors.optimisation_get_for_user, user=request.user, optimisation_id=optimisation_id)
    if not optimisation.best_params:
        messages.error(request, "This optimisation has no feasible result to backtest.")
        return redirect("backtests:optimisation-detail", optimisation.pk)
    try:
        backtest = services.backtest_create(
            owner=request.user,
            strategy_key=optimisation.strategy_key,
            params={**(optimisation.params or {}), **optimisation.best_params},
            rule_set_id=None,
            rules=optimisation.rules,
            instrument_id=optimisation.instrument_id,
            timeframe=optimisation.timeframe,
            start_at=optimisation.start_at,
            end_at=optimisation.end_at,
            settings=optimisation.settings,
            name=f"Best of optimisation #{optimisation.pk}",
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("backtests:optimisation-detail", optimisation.pk)
    return redirect("backtests:detail", backtest_id=backtest.pk)


# --- walk-forwards --------------------------------------------------------------------------------


@login_required
def walk_forward_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _research_new(
        request, WalkForwardForm, services.walk_forward_create, "backtests:walk-forward-detail",
        "backtests/walk_forward_new.html",
    )  # fmt: skip


@login_required
def walk_forward_detail(request: AuthenticatedHttpRequest, walk_forward_id: int) -> HttpResponse:
    walk_forward = or_404(selectors.walk_forward_get_for_user, user=request.user, walk_forward_id=walk_forward_id)
    curves = walk_forward.equity or {}
    context: dict[str, Any] = {
        "walk_forward": walk_forward,
        "windows": reports.walk_forward_windows(walk_forward.windows),
        "summary": reports.walk_forward_summary(walk_forward.metrics or {}),
        "chart_config": {"curves": chart_curves(curves)},
        **job_context("walk_forward", walk_forward, reverse("backtests:walk-forward-status", args=[walk_forward.pk])),
    }
    return render(request, "backtests/walk_forward_detail.html", context)


@login_required
def walk_forward_status(request: AuthenticatedHttpRequest, walk_forward_id: int) -> JsonResponse:
    walk_forward = or_404(selectors.walk_forward_get_for_user, user=request.user, walk_forward_id=walk_forward_id)
    return JsonResponse(status_payload("walk_forward", walk_forward))


@login_required
@require_POST
def walk_forward_cancel(request: AuthenticatedHttpRequest, walk_forward_id: int) -> HttpResponse:
    walk_forward = or_404(selectors.walk_forward_get_for_user, user=request.user, walk_forward_id=walk_forward_id)
    try:
        services.walk_forward_cancel(walk_forward=walk_forward, actor=request.user)
        messages.success(request, "Walk-forward cancelled.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("backtests:walk-forward-detail", walk_forward.pk)


# --- Monte Carlo ----------------------------------------------------------------------------------


@login_required
def monte_carlo_new(request: AuthenticatedHttpRequest, backtest_id: int) -> HttpResponse:
    backtest = finished_backtest(request, backtest_id)
    form = MonteCarloForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            monte_carlo = services.monte_carlo_create(owner=request.user, backtest=backtest, **form.research_spec())
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            return redirect("backtests:monte-carlo-detail", monte_carlo.pk)
    return render(request, "backtests/monte_carlo_new.html", {"form": form, "backtest": backtest})


@login_required
def monte_carlo_detail(request: AuthenticatedHttpRequest, monte_carlo_id: int) -> HttpResponse:
    monte_carlo = or_404(selectors.monte_carlo_get_for_user, user=request.user, monte_carlo_id=monte_carlo_id)
    context: dict[str, Any] = {
        "monte_carlo": monte_carlo,
        "backtest": monte_carlo.backtest,
        **job_context("monte_carlo", monte_carlo, reverse("backtests:monte-carlo-status", args=[monte_carlo.pk])),
    }
    if monte_carlo.status == JobStatus.SUCCEEDED and monte_carlo.results:
        context["results"] = reports.monte_carlo_view(monte_carlo.results)
    return render(request, "backtests/monte_carlo_detail.html", context)


@login_required
def monte_carlo_status(request: AuthenticatedHttpRequest, monte_carlo_id: int) -> JsonResponse:
    monte_carlo = or_404(selectors.monte_carlo_get_for_user, user=request.user, monte_carlo_id=monte_carlo_id)
    return JsonResponse(status_payload("monte_carlo", monte_carlo))


@login_required
@require_POST
def monte_carlo_cancel(request: AuthenticatedHttpRequest, monte_carlo_id: int) -> HttpResponse:
    monte_carlo = or_404(selectors.monte_carlo_get_for_user, user=request.user, monte_carlo_id=monte_carlo_id)
    try:
        services.monte_carlo_cancel(monte_carlo=monte_carlo, actor=request.user)
        messages.success(request, "Monte Carlo run cancelled.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("backtests:monte-carlo-detail", monte_carlo.pk)
