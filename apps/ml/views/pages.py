"""The ML strategy pages: the list, the form (new / edit) and the model page, plus the status
JSON the model page polls as a fallback for missed websocket events."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe

from apps.accounts.models import TradingAccount
from apps.accounts.selectors import account_list_for_user
from apps.common.errors import ApplicationError, NotFound
from apps.marketdata import selectors as market_selectors
from apps.ml import selectors, services
from apps.ml.forms import BacktestForm, DeployForm, MLStrategyForm, ScheduleForm, ml_strategy_initial, schedule_initial
from apps.ml.models import MLStrategy, ModelVersion
from apps.ml.views import charts, display
from apps.users.requests import AuthenticatedHttpRequest

VERSION_ROWS = 100


def ml_or_404(request: AuthenticatedHttpRequest, pk: int) -> MLStrategy:
    try:
        return selectors.ml_strategy_get(user=request.user, pk=pk)
    except NotFound:
        raise Http404("No such ML strategy.") from None


def _catalogue() -> list[dict[str, Any]]:
    return list(selectors.feature_catalogue())


def _labels(catalogue: list[dict[str, Any]]) -> dict[str, str]:
    return {str(f["name"]): str(f.get("label") or f["name"]) for f in catalogue}


def _default_features() -> list[str]:
    from apps.ml.pipeline.features import DEFAULT_FEATURES

    return list(DEFAULT_FEATURES)


@login_required
def ml_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    rows = []
    for ml in selectors.ml_strategies_for(user=request.user)[:200]:
        promoted = ml.promoted_version
        last_status = getattr(ml, "last_status", None)
        rows.append(
            {
                "ml": ml,
                "instruments": ", ".join(i.symbol for i in ml.instruments.all()),
                "promoted": promoted,
                "promoted_auc": display.number((promoted.metrics or {}).get("auc")) if promoted else display.DASH,
                "last_number": getattr(ml, "last_number", None),
                "last_status": last_status,
                "last_status_display": ModelVersion.Status(last_status).label if last_status else "",
                "last_error": getattr(ml, "last_error", "") or "",
                "schedule": services.ml_schedule_describe(ml_strategy=ml)["text"],
                "drift_max_psi": getattr(ml, "drift_max_psi", None),
                "drift_is_drift": getattr(ml, "drift_is_drift", None),
                "drift_checked_at": getattr(ml, "drift_checked_at", None),
            }
        )
    return render(request, "ml/list.html", {"rows": rows})


def _form_kwargs(ml: MLStrategy | None) -> dict[str, Any]:
    instruments = list(market_selectors.instrument_list())
    if ml is not None:
        # An instrument switched off after training still shows as chosen.
        known = {i.pk for i in instruments}
        instruments += [i for i in ml.instruments.all() if i.pk not in known]
    locked = ml is not None and ml.versions.exists()
    return {"instruments": instruments, "catalogue": _catalogue(), "locked": locked}


def _form_page(request: AuthenticatedHttpRequest, form: MLStrategyForm, ml: MLStrategy | None) -> HttpResponse:
    return render(
        request,
        "ml/form.html",
        {"form": form, "ml": ml, "form_config": {"defaults": _default_features()}},
    )


@login_required
def ml_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    kwargs = _form_kwargs(None)
    if request.method == "POST":
        form = MLStrategyForm(request.POST, **kwargs)
        if form.is_valid():
            try:
                ml = services.ml_strategy_create(owner=request.user, data=form.service_data())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "ML strategy saved: train it to get its first model.")
                return redirect("ml:detail", pk=ml.pk)
    else:
        initial = ml_strategy_initial(None, default_features=_default_features())
        first = next(iter(kwargs["instruments"]), None)
        if first is not None:
            initial["instrument_ids"] = [first.pk]
            initial["timeframe"] = market_selectors.default_timeframe(instrument=first) or "1h"
        form = MLStrategyForm(initial=initial, **kwargs)
    return _form_page(request, form, None)


@login_required
def ml_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    kwargs = _form_kwargs(ml)
    initial = ml_strategy_initial(ml, schedule=services.ml_schedule_describe(ml_strategy=ml))
    if request.method == "POST":
        form = MLStrategyForm(request.POST, initial=initial, **kwargs)
        if form.is_valid():
            try:
                services.ml_strategy_update(ml_strategy=ml, data=form.service_data(), actor=request.user)
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "ML strategy saved. The next training uses the new settings.")
                return redirect("ml:detail", pk=ml.pk)
    else:
        form = MLStrategyForm(initial=initial, **kwargs)
    return _form_page(request, form, ml)


def _charts(ml: MLStrategy, promoted: ModelVersion | None, labels: dict[str, str]) -> dict[str, Any]:
    history = selectors.metrics_history(ml_strategy=ml)
    drift = selectors.drift_history(ml_strategy=ml)
    latest_drift = drift[-1] if drift else None
    equity = (promoted.oos_backtest or {}).get("equity") if promoted else None
    return {
        "metrics_svg": mark_safe(charts.metrics_chart(history)),  # noqa: S308 - built from numbers and escaped text
        "metrics_count": len(history),
        "drift_svg": mark_safe(charts.drift_chart(drift, threshold=ml.drift_threshold)) if drift else "",  # noqa: S308
        "drift_count": len(drift),
        "latest_drift": latest_drift,
        "worst_features": display.worst_features(latest_drift["psi"], labels=labels) if latest_drift else [],
        "equity_svg": mark_safe(charts.equity_chart(equity)) if equity else "",  # noqa: S308
        "equity_points": len(equity or []),
        "importances": charts.importance_rows(promoted.feature_importances, labels=labels) if promoted else [],
    }


def _can_roll_back(promoted: ModelVersion | None, versions: list[ModelVersion]) -> bool:
    """Whether the rollback button can work: the promoted version replaced a retired one that
    still has its model (what `version_rollback` needs)."""
    if promoted is None or promoted.replaced_id is None:
        return False
    return any(
        v.pk == promoted.replaced_id and v.status == ModelVersion.Status.RETIRED and v.artifact_sha256 for v in versions
    )


@login_required
def ml_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return detail_page(request, ml_or_404(request, pk))


def detail_page(request: AuthenticatedHttpRequest, ml: MLStrategy, **forms: Any) -> HttpResponse:
    """The model page; ``forms`` replace its blank forms (a refused one, bound, with its errors)."""
    catalogue = _catalogue()
    labels = _labels(catalogue)
    versions = list(selectors.versions_for(ml_strategy=ml)[:VERSION_ROWS])
    active = next((v for v in versions if v.status in ModelVersion.ACTIVE), None)
    finished = next((v for v in versions if v.status not in ModelVersion.ACTIVE), None)
    promoted = next((v for v in versions if v.pk == ml.promoted_version_id), None)
    if promoted is None and ml.promoted_version_id:
        promoted = ml.promoted_version
    schedule = services.ml_schedule_describe(ml_strategy=ml)
    accounts = list(account_list_for_user(user=request.user, kind=TradingAccount.Kind.PAPER))
    instruments = list(ml.instruments.all())
    context = {
        "ml": ml,
        "instruments": instruments,
        "summary": display.config_summary(ml, catalogue_labels=labels),
        "versions": [display.version_row(v, can_promote=True) for v in versions],
        "active": active,
        "active_pct": round((active.progress if active else 0) * 100),
        "finished": finished,
        "finished_metrics": display.metric_cells(finished.metrics if finished else None),
        "promoted": promoted,
        "promoted_metrics": display.metric_cells(promoted.metrics if promoted else None),
        "promoted_oos": display.metric_cells((promoted.oos_backtest or {}).get("metrics") if promoted else None),
        "can_rollback": _can_roll_back(promoted, versions),
        "schedule": schedule,
        "schedule_form": ScheduleForm(initial=schedule_initial(schedule)),
        "deployments": list(selectors.ml_deployments(ml_strategy=ml)),
        "accounts": accounts,
        "deploy_form": DeployForm(accounts=accounts, initial={"capital": 10_000}),
        "backtest_form": BacktestForm(
            instruments=instruments,
            initial=BacktestForm.initial_for(ml, promoted),
        ),
        "page_config": display.page_config(ml, active),
        **_charts(ml, promoted, labels),
        **forms,
    }
    return render(request, "ml/detail.html", context, status=400 if forms else 200)


@login_required
def ml_status(request: AuthenticatedHttpRequest, pk: int) -> JsonResponse:
    """The newest version's state (what the "ml.progress" / "ml.version" events carry)."""
    ml = ml_or_404(request, pk)
    latest = selectors.versions_for(ml_strategy=ml).first()
    return JsonResponse({"ml_strategy": ml.pk, "latest": display.version_payload(latest)})
