"""The model page's buttons: train now, cancel a training, promote a version, roll back, the
schedule, backtest, deploy on paper and delete. Each is a POST that calls one service and
redirects (to the model page with a message, or to what it created); a refusal becomes a message,
or for the forms, the model page again with the error at its field."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.models import TradingAccount
from apps.accounts.selectors import account_list_for_user
from apps.common.errors import ApplicationError, NotFound, ReauthenticationRequired
from apps.ml import selectors, services
from apps.ml.forms import BacktestForm, DeployForm, ScheduleForm
from apps.ml.models import ModelVersion
from apps.ml.views.pages import detail_page, ml_or_404
from apps.users.requests import AuthenticatedHttpRequest


def _here(pk: int) -> str:
    return reverse("ml:detail", args=[pk])


def _refused(request: AuthenticatedHttpRequest, exc: ApplicationError, prefix: str = "") -> None:
    fields = exc.extra.get("fields")
    details = []
    if isinstance(fields, dict):
        for messages_ in fields.values():
            details += [str(m) for m in ([messages_] if isinstance(messages_, str) else messages_)]
    text = exc.message if not details or exc.message in details else f"{exc.message} {' '.join(details)}"
    messages.error(request, f"{prefix}{text}")


def _reauth(request: AuthenticatedHttpRequest, exc: ReauthenticationRequired, here: str) -> HttpResponse:
    messages.warning(request, exc.message)
    target = exc.extra.get("reauth_url") or reverse("two_factor_verify")
    return redirect(f"{target}?{urlencode({'next': here})}")


@login_required
@require_POST
def ml_train(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    try:
        version = services.training_start(ml_strategy=ml, trigger="manual", requested_by=request.user)
    except ApplicationError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Training v{version.number} queued: its progress shows below.")
    return redirect(f"{_here(ml.pk)}#training")


@login_required
@require_POST
def ml_cancel(request: AuthenticatedHttpRequest, pk: int, number: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    version = _version(request, ml.pk, number)
    try:
        services.training_cancel(version=version, actor=request.user)
    except ApplicationError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Training v{version.number} cancelled.")
    return redirect(_here(ml.pk))


def _version(request: AuthenticatedHttpRequest, ml_id: int, number: int) -> ModelVersion:
    try:
        return selectors.version_get(user=request.user, ml_strategy_id=ml_id, number=number)
    except NotFound:
        raise Http404("No such version.") from None


@login_required
@require_POST
def ml_promote(request: AuthenticatedHttpRequest, pk: int, number: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    version = _version(request, ml.pk, number)
    try:
        services.version_promote(version=version, actor=request.user, reason="Promoted by hand from the model page.")
    except ApplicationError as exc:
        _refused(request, exc)
    else:
        messages.success(
            request, f"v{version.number} is now the promoted model: deployments trade it from their next tick."
        )
    return redirect(f"{_here(ml.pk)}#versions")


@login_required
@require_POST
def ml_rollback(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    try:
        version = services.version_rollback(ml_strategy=ml, actor=request.user)
    except ApplicationError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Rolled back: v{version.number} is the promoted model again.")
    return redirect(f"{_here(ml.pk)}#versions")


@login_required
@require_POST
def ml_schedule(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            services.ml_schedule_set(ml_strategy=ml, schedule=form.schedule_data(), actor=request.user)
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            text = services.ml_schedule_describe(ml_strategy=ml)["text"]
            messages.success(request, f"Schedule saved: {text}.")
            return redirect(f"{_here(ml.pk)}#schedule")
    messages.error(request, "The schedule was not changed: see the schedule below.")
    return detail_page(request, ml, schedule_form=form)


@login_required
@require_POST
def ml_backtest(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    form = BacktestForm(request.POST, instruments=list(ml.instruments.all()))
    if form.is_valid():
        try:
            backtest = services.ml_backtest_start(owner=request.user, ml_strategy=ml, data=form.service_data())
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(request, "Backtest started: its progress shows below.")
            return redirect("backtests:detail", backtest_id=backtest.pk)
    messages.error(request, "The backtest did not start: see the backtest form below.")
    return detail_page(request, ml, backtest_form=form)


@login_required
@require_POST
def ml_deploy(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    accounts = list(account_list_for_user(user=request.user, kind=TradingAccount.Kind.PAPER))
    form = DeployForm(request.POST, accounts=accounts)
    if form.is_valid():
        try:
            deployment = services.ml_deploy(owner=request.user, ml_strategy=ml, data=form.service_data())
        except ReauthenticationRequired as exc:
            return _reauth(request, exc, f"{_here(ml.pk)}#deploy")
        except ApplicationError as exc:
            form.add_service_error(exc)
        else:
            messages.success(
                request, f"Deployed on paper as “{deployment.name}”: it trades the promoted model from the next bar."
            )
            return redirect("strategies:deployment-detail", deployment_id=deployment.pk)
    messages.error(request, "Not deployed: see the deploy form below.")
    return detail_page(request, ml, deploy_form=form)


@login_required
@require_POST
def ml_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    ml = ml_or_404(request, pk)
    try:
        services.ml_strategy_delete(ml_strategy=ml, actor=request.user)
    except ApplicationError as exc:
        _refused(request, exc)
        return redirect(_here(ml.pk))
    messages.success(request, f"“{ml.name}” deleted, with its versions and schedule.")
    return redirect("ml:list")
