"""Portal pages of trading: orders (filter by status and account, cancel), one order with its
fills, fills with their slippage, positions with P&L at the last close, risk events ("refused
orders and why"), and the manual order form on one's own accounts.

Everything is read through the selectors (another user's order is a 404); writes go through the
services (manual_order_place: the same risk checks as a strategy's orders). A refusal is shown
above the form, a bad value at its input, the other values kept. The lists follow the owner's
``trade.order`` / ``trade.fill`` / ``trade.position`` / ``trade.risk_event`` events over the
websocket (static/js/trades_live.js) and refresh their table.
"""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.selectors import account_list_for_user
from apps.common.errors import ApplicationError, NotFound
from apps.trades import selectors
from apps.trades.forms import ManualOrderForm, OrderFilterForm
from apps.trades.models import Order
from apps.trades.risk.prices import last_prices
from apps.trades.services.manual import manual_order_place, order_cancel_for_user
from apps.users.requests import AuthenticatedHttpRequest

PAGE_SIZE = 50


def _page(request: AuthenticatedHttpRequest, queryset: Any) -> Any:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def _order(request: AuthenticatedHttpRequest, order_id: int) -> Order:
    try:
        return selectors.order_get_for_user(user=request.user, order_id=order_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _account_filter(request: AuthenticatedHttpRequest) -> int | None:
    try:
        return int(request.GET["account"]) if request.GET.get("account") else None
    except ValueError:
        return None


@login_required
def order_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    accounts = account_list_for_user(user=request.user, include_disabled=True)
    form = OrderFilterForm(request.GET or None, accounts=accounts)
    status = account = None
    if form.is_valid():
        status = form.cleaned_data.get("status") or None
        account = form.cleaned_data.get("account")
    orders = selectors.order_list_for_user(user=request.user, status=status, account_id=account)
    return render(
        request,
        "trades/orders.html",
        {"page": _page(request, orders), "form": form, "open_statuses": Order.OPEN_STATUSES, "live_kind": "orders"},
    )


@login_required
def order_detail(request: AuthenticatedHttpRequest, order_id: int) -> HttpResponse:
    order = _order(request, order_id)
    fills = selectors.order_fills(order=order)
    children = Order.objects.filter(parent=order).order_by("pk")
    events = order.risk_events.order_by("-created_at")
    return render(
        request,
        "trades/order_detail.html",
        {"order": order, "fills": fills, "children": children, "events": events, "live_kind": "order"},
    )


@login_required
@require_POST
def order_cancel(request: AuthenticatedHttpRequest, order_id: int) -> HttpResponse:
    order = _order(request, order_id)
    try:
        order_cancel_for_user(order=order, actor=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Asked to cancel {order.client_order_id}.")
    target = request.POST.get("next") or ""
    if target.startswith("/trades/"):
        return redirect(target)
    return redirect("trades:order-detail", order_id=order.pk)


@login_required
def order_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    accounts = list(account_list_for_user(user=request.user))
    if request.method == "POST":
        form = ManualOrderForm(request.POST, accounts=accounts)
        if form.is_valid():
            try:
                order, _ = manual_order_place(user=request.user, data=form.order_data())
            except NotFound:
                form.add_error("account", "Choose one of your accounts.")
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, f"Order {order.client_order_id} placed.")
                return redirect("trades:order-detail", order_id=order.pk)
    else:
        initial: dict[str, Any] = {}
        if request.GET.get("account"):
            initial["account"] = request.GET["account"]
        form = ManualOrderForm(initial=initial, accounts=accounts)
    return render(request, "trades/order_new.html", {"form": form, "accounts": accounts})


@login_required
def fill_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    fills = selectors.fill_list_for_user(user=request.user, account_id=_account_filter(request))
    return render(request, "trades/fills.html", {"page": _page(request, fills), "live_kind": "fills"})


@login_required
def position_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    from apps.trades.api import unrealized_pnl

    open_only = request.GET.get("all") != "1"
    positions = selectors.position_list_for_user(
        user=request.user, account_id=_account_filter(request), open_only=open_only
    )
    page = _page(request, positions)
    marks = last_prices(instrument_ids={p.instrument_id for p in page})
    rows = [
        {
            "position": p,
            "mark": marks.get(p.instrument_id),
            "unrealized": unrealized_pnl(p, marks[p.instrument_id]) if p.instrument_id in marks else None,
        }
        for p in page
    ]
    return render(
        request,
        "trades/positions.html",
        {"page": page, "rows": rows, "open_only": open_only, "live_kind": "positions"},
    )


@login_required
def risk_event_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    events = selectors.risk_event_list_for_user(user=request.user, account_id=_account_filter(request))
    return render(request, "trades/risk_events.html", {"page": _page(request, events), "live_kind": "risk"})
