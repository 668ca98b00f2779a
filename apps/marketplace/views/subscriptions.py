"""Portal pages of copy trading:

- ``/marketplace/<listing_id>/subscribe/``: the subscribe form (own active accounts only);
- ``/marketplace/subscriptions/``: the user's subscriptions;
- ``/marketplace/subscriptions/<id>/``: one subscription: status, allocation and limits, the
  copy book's P&L, positions and fills, the copied trades beside the leader's fills with the
  slippage between them (kept live by static/marketplace/subscription.js over the websocket),
  the fee statement, and pause / resume / unsubscribe / edit;
- ``/marketplace/leader/``: the leader's dashboard of followers of each of their listings.

Reads go through the selectors (another user's subscription is a 404), writes through the
subscription services; a refusal is shown at the input it names or as a message.
"""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from apps.accounts import selectors as account_selectors
from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError, NotFound, ReauthenticationRequired
from apps.marketplace.forms_subscriptions import SubscriptionForm, subscription_initial
from apps.marketplace.models import Listing, Subscription
from apps.marketplace.selectors import subscriptions as selectors
from apps.users.requests import AuthenticatedHttpRequest

PAGE_ROWS = 100
CAN_PAUSE = (Subscription.Status.ACTIVE,)
CAN_RESUME = (Subscription.Status.PAUSED, Subscription.Status.STOPPED)
CAN_END = Subscription.LIVE_STATUSES


def _services() -> Any:
    from apps.marketplace.services import subscriptions

    return subscriptions


def _verify_redirect(request: AuthenticatedHttpRequest, exc: ReauthenticationRequired, here: str) -> HttpResponse:
    messages.warning(request, exc.message)
    return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': here})}")


def _subscription_or_404(request: AuthenticatedHttpRequest, subscription_id: int) -> Subscription:
    try:
        return selectors.subscription_get_for_user(user=request.user, subscription_id=subscription_id)
    except NotFound:
        raise Http404("No such subscription.") from None


def _accounts(request: AuthenticatedHttpRequest) -> list[TradingAccount]:
    accounts = account_selectors.account_list_for_user(user=request.user)
    return list(accounts.filter(status=TradingAccount.Status.ACTIVE))


def _listing_refusal(request: AuthenticatedHttpRequest, listing: Listing) -> str:
    """Why the user cannot subscribe to this listing at all ("" when they may try)."""
    if listing.owner_id == request.user.pk:
        return "This is your own listing: you cannot copy yourself."
    if listing.status != Listing.Status.APPROVED:
        return "This listing is not open for subscriptions (it is not approved)."
    return ""


@login_required
def subscribe(request: AuthenticatedHttpRequest, listing_id: int) -> HttpResponse:
    try:
        listing = selectors.listing_get_for_subscribe(user=request.user, listing_id=listing_id)
    except NotFound:
        raise Http404("No such listing.") from None
    accounts = _accounts(request)
    here = reverse("marketplace:subscribe", args=[listing.pk])
    if request.method == "POST":
        form = SubscriptionForm(request.POST, accounts=accounts)
        if form.is_valid():
            try:
                subscription = _services().subscription_create(
                    follower=request.user, listing=listing, request=request, **form.service_kwargs()
                )
            except ReauthenticationRequired as exc:
                return _verify_redirect(request, exc, here)
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, f"You are copying “{listing.title}”: new trades of the leader are copied.")
                return redirect("marketplace:subscription-detail", subscription_id=subscription.pk)
    else:
        initial: dict[str, Any] = {"allocation": listing.min_allocation.normalize() or None}
        paper = [a for a in accounts if a.kind == TradingAccount.Kind.PAPER]
        if accounts:
            initial["account"] = (paper or accounts)[0].pk
        form = SubscriptionForm(accounts=accounts, initial=initial)
    context = {
        "form": form,
        "listing": listing,
        "editing": False,
        "has_accounts": bool(accounts),
        "refusal": _listing_refusal(request, listing),
        "existing": selectors.subscription_open_for_listing(user=request.user, listing=listing),
    }
    return render(request, "marketplace/subscribe.html", context)


@login_required
def subscription_edit(request: AuthenticatedHttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription_or_404(request, subscription_id)
    here = reverse("marketplace:subscription-detail", args=[subscription.pk])
    if subscription.status == Subscription.Status.ENDED:
        messages.error(request, "This subscription has ended: nothing to edit.")
        return redirect(here)
    if request.method == "POST":
        form = SubscriptionForm(request.POST, editing=True)
        if form.is_valid():
            try:
                _services().subscription_update(subscription=subscription, actor=request.user, **form.service_kwargs())
            except ReauthenticationRequired as exc:
                return _verify_redirect(request, exc, reverse("marketplace:subscription-edit", args=[subscription.pk]))
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "Saved: the new settings apply to the next copied trade.")
                return redirect(here)
    else:
        form = SubscriptionForm(editing=True, initial=subscription_initial(subscription))
    context = {
        "form": form,
        "listing": subscription.listing,
        "subscription": subscription,
        "editing": True,
        "has_accounts": True,
        "refusal": "",
        "existing": None,
    }
    return render(request, "marketplace/subscribe.html", context)


@login_required
def subscription_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    subscriptions = list(selectors.subscription_list_for_user(user=request.user)[:200])
    return render(request, "marketplace/subscription_list.html", {"subscriptions": subscriptions})


@login_required
def subscription_detail(request: AuthenticatedHttpRequest, subscription_id: int) -> HttpResponse:
    subscription = _subscription_or_404(request, subscription_id)
    copies = selectors.copy_rows(selectors.subscription_copies(subscription=subscription)[:PAGE_ROWS])
    context = {
        "subscription": subscription,
        "listing": subscription.listing,
        "pnl": selectors.subscription_pnl(subscription=subscription),
        "positions": selectors.subscription_positions(subscription=subscription),
        "fills": selectors.subscription_fills(subscription=subscription),
        "copies": copies,
        "statement": selectors.fee_statement(subscription=subscription),
        "can_pause": subscription.status in CAN_PAUSE,
        "can_resume": subscription.status in CAN_RESUME,
        "can_end": subscription.status in CAN_END,
        "can_edit": subscription.status != Subscription.Status.ENDED,
        "page_config": {"subscription": subscription.pk, "deployment": subscription.deployment_id},
    }
    return render(request, "marketplace/subscription_detail.html", context)


@login_required
@require_POST
def subscription_action(request: AuthenticatedHttpRequest, subscription_id: int, action: str) -> HttpResponse:
    subscription = _subscription_or_404(request, subscription_id)
    here = reverse("marketplace:subscription-detail", args=[subscription.pk])
    services = _services()
    try:
        if action == "pause":
            services.subscription_pause(subscription=subscription, actor=request.user, reason="Paused by the follower.")
            messages.success(request, "Paused: the leader's trades are not copied until you resume.")
        elif action == "resume":
            services.subscription_resume(subscription=subscription, actor=request.user, request=request)
            messages.success(request, "Resumed: new trades of the leader are copied again.")
        elif action == "unsubscribe":
            close = request.POST.get("close_positions") in ("1", "on", "true")
            services.subscription_unsubscribe(subscription=subscription, actor=request.user, close_positions=close)
            messages.success(
                request,
                "Unsubscribed" + (": the copied positions are closing at market." if close else "; positions kept."),
            )
        else:
            raise Http404("No such action.")
    except ReauthenticationRequired as exc:
        return _verify_redirect(request, exc, here)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(here)


@login_required
def leader_dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(
        request, "marketplace/leader_dashboard.html", {"summaries": selectors.leader_dashboard(user=request.user)}
    )


urlpatterns: list[URLPattern] = [
    path("<int:listing_id>/subscribe/", subscribe, name="subscribe"),
    path("subscriptions/", subscription_list, name="subscription-list"),
    path("subscriptions/<int:subscription_id>/", subscription_detail, name="subscription-detail"),
    path("subscriptions/<int:subscription_id>/edit/", subscription_edit, name="subscription-edit"),
    path(
        "subscriptions/<int:subscription_id>/<str:action>/",
        subscription_action,
        name="subscription-action",
    ),
    path("leader/", leader_dashboard, name="leader-dashboard"),
]
