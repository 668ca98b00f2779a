"""Portal pages of deployments: the list, the create / edit form, and the deployment page (live
chart with entry/exit markers, signals, orders, fills, position and P&L, all updated over the
websocket by static/js/deployment.js), with start / pause / resume / stop buttons.

Reads go through the selectors (another user's deployment is a 404), writes through the
services; a service error is shown at the input it names, or as a message on the page.
"""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError, NotFound, ReauthenticationRequired
from apps.marketdata import selectors as market_selectors
from apps.strategies import selectors
from apps.strategies.deployment_forms import DeploymentForm, deployment_initial
from apps.strategies.models import Deployment
from apps.strategies.services import deployments as services
from apps.users.requests import AuthenticatedHttpRequest

PAGE_ROWS = 50


def _deployment_or_404(request: AuthenticatedHttpRequest, deployment_id: int) -> Deployment:
    try:
        return selectors.deployment_get_for_user(user=request.user, deployment_id=deployment_id)
    except NotFound:
        raise Http404("No such deployment.") from None


def _form_kwargs(request: AuthenticatedHttpRequest) -> dict[str, Any]:
    return {
        "catalogue": selectors.strategy_catalogue(),
        "rule_sets": list(selectors.rule_set_list_for_user(user=request.user)),
        "instruments": list(market_selectors.instrument_list()),
        "accounts": list(TradingAccount.objects.filter(owner=request.user).order_by("name", "pk")),
    }


def _form_context(form: DeploymentForm, kwargs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    catalogue = {
        str(item["key"]): {
            "name": item["name"],
            "summary": item["summary"],
            "params": item["params_schema"].get("properties", {}),
            "space": {},
        }
        for item in kwargs["catalogue"]
    }
    return {
        "form": form,
        "has_accounts": bool(kwargs["accounts"]),
        "form_config": {
            "catalogue": catalogue,
            "timeframes": {},
            "ruleSets": {f"rules:{rs.pk}": rs.name for rs in kwargs["rule_sets"]},
        },
        **extra,
    }


@login_required
def deployment_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    deployments = list(selectors.deployment_list_for_user(user=request.user)[:200])
    return render(request, "strategies/deployment_list.html", {"deployments": deployments})


@login_required
def deployment_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    kwargs = _form_kwargs(request)
    if request.method == "POST":
        form = DeploymentForm(request.POST, **kwargs)
        if form.is_valid():
            try:
                deployment = services.deployment_create(owner=request.user, **form.service_kwargs())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "Deployment created as a draft: start it when you are ready.")
                return redirect("strategies:deployment-detail", deployment_id=deployment.pk)
    else:
        initial: dict[str, Any] = {}
        if request.GET.get("strategy"):
            initial["strategy"] = request.GET["strategy"]
        if kwargs["accounts"]:
            paper = [a for a in kwargs["accounts"] if a.kind == TradingAccount.Kind.PAPER]
            initial["account"] = (paper or kwargs["accounts"])[0].pk
        form = DeploymentForm(**kwargs, initial=initial)
    return render(request, "strategies/deployment_form.html", _form_context(form, kwargs, deployment=None))


@login_required
def deployment_edit(request: AuthenticatedHttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_or_404(request, deployment_id)
    kwargs = _form_kwargs(request)
    if request.method == "POST":
        form = DeploymentForm(request.POST, **kwargs)
        if form.is_valid():
            try:
                services.deployment_update(deployment=deployment, actor=request.user, **form.service_kwargs())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "Deployment saved.")
                return redirect("strategies:deployment-detail", deployment_id=deployment.pk)
    else:
        form = DeploymentForm(**kwargs, initial=deployment_initial(deployment))
    return render(request, "strategies/deployment_form.html", _form_context(form, kwargs, deployment=deployment))


@login_required
def deployment_detail(request: AuthenticatedHttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_or_404(request, deployment_id)
    instruments = list(deployment.instruments.all())
    instrument = instruments[0] if instruments else None
    pnl = selectors.deployment_pnl(deployment=deployment)
    context = {
        "deployment": deployment,
        "instruments": instruments,
        "pnl": pnl,
        "signals": list(selectors.deployment_signals(deployment=deployment)[:PAGE_ROWS]),
        "orders": list(selectors.deployment_orders(deployment=deployment)[:PAGE_ROWS]),
        "fills": list(selectors.deployment_fills(deployment=deployment)[:PAGE_ROWS]),
        "positions": list(selectors.deployment_positions(deployment=deployment)),
        "can_edit": deployment.status in services.EDITABLE,
        "can_start": deployment.status in services.STARTABLE,
        "can_pause": deployment.is_running,
        "can_resume": deployment.status in services.RESUMABLE,
        "can_stop": deployment.status in services.STOPPABLE,
        "can_delete": deployment.status == Deployment.Status.DRAFT,
        "start_mode": "paper" if deployment.account.kind == TradingAccount.Kind.PAPER else "live",
        "page_config": {
            "deployment": deployment.pk,
            "status": deployment.status,
            "instrument": instrument.pk if instrument else None,
            "symbol": instrument.symbol if instrument else "",
            "timeframe": deployment.timeframe,
            "tickSize": float(instrument.tick_size) if instrument and instrument.tick_size else None,
            "chartUrl": reverse("api:deployment-chart", args=[deployment.pk]),
            "detailUrl": reverse("api:deployment-detail", args=[deployment.pk]),
            "equityUrl": reverse("api:deployment-equity", args=[deployment.pk]),
        },
    }
    return render(request, "strategies/deployment_detail.html", context)


@login_required
@require_POST
def deployment_action(request: AuthenticatedHttpRequest, deployment_id: int, action: str) -> HttpResponse:
    deployment = _deployment_or_404(request, deployment_id)
    here = reverse("strategies:deployment-detail", args=[deployment.pk])
    try:
        if action == "start":
            services.deployment_start(
                deployment=deployment, mode=request.POST.get("mode", "paper"), request=request, actor=request.user
            )
            messages.success(request, "Started: it trades from the next closed bar.")
        elif action == "pause":
            services.deployment_pause(deployment=deployment, actor=request.user)
            messages.success(request, "Paused.")
        elif action == "resume":
            services.deployment_resume(deployment=deployment, request=request, actor=request.user)
            messages.success(request, "Resumed.")
        elif action == "stop":
            close = request.POST.get("close_positions") in ("1", "on", "true")
            services.deployment_stop(deployment=deployment, close_positions=close, actor=request.user)
            messages.success(request, "Stopped" + (", positions closing at market." if close else "."))
        elif action == "delete":
            services.deployment_delete(deployment=deployment, actor=request.user)
            messages.success(request, "Draft deleted.")
            return redirect("strategies:deployment-list")
        else:
            raise Http404("No such action.")
    except ReauthenticationRequired as exc:
        messages.warning(request, exc.message)
        return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': here})}")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(here)
