"""Portal pages of the marketplace's listings: the marketplace (approved listings: search, filter,
sort, pages), a listing (verified equity chart, stats labelled paper or live, the leader's recent
trades delayed for non-subscribers, backtests labelled hypothetical, reviews and the review form,
"Copy this strategy"), My listings, and publishing / editing / submitting one's own listing.

Reads go through the selectors (a listing that is not approved is a 404 for everyone but its
owner and staff), writes through the services; a service error is shown at the field it names.
"""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.views.decorators.http import require_POST

from apps.common.errors import ApplicationError, NotFound, ReauthenticationRequired
from apps.marketplace.forms_listings import ListingForm, MarketplaceFilterForm, ReviewForm, listing_initial
from apps.marketplace.models import Listing
from apps.marketplace.selectors import listings as selectors
from apps.marketplace.services import listings as services
from apps.marketplace.services import reviews as review_services
from apps.strategies.models import Deployment
from apps.users.requests import AuthenticatedHttpRequest

PAGE_SIZE = 12
OWNER_EDITABLE = (
    Listing.Status.DRAFT,
    Listing.Status.REJECTED,
    Listing.Status.PENDING,
    Listing.Status.APPROVED,
)


def percent(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"  # noqa: RUF001 - an en dash, for "no value"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def _decorate(listings: list[Listing]) -> list[Listing]:
    """Display strings the cards show (percentages with sensible precision)."""
    for listing in listings:
        listing.pct_return = percent(listing.stats_return, signed=True)  # type: ignore[attr-defined]
        listing.pct_drawdown = percent(listing.stats_max_drawdown)  # type: ignore[attr-defined]
    return listings


def subscribe_url(listing_id: int) -> str:
    """The other half's subscribe page, by name once it exists."""
    try:
        return reverse("marketplace:subscribe", args=[listing_id])
    except NoReverseMatch:
        return f"/marketplace/{listing_id}/subscribe/"


def _get(request: AuthenticatedHttpRequest, listing_id: int) -> Listing:
    try:
        return selectors.listing_get_for_user(user=request.user, listing_id=listing_id)
    except NotFound:
        raise Http404("No such listing.") from None


def _owned(request: AuthenticatedHttpRequest, listing_id: int) -> Listing:
    try:
        return selectors.listing_get_owned(user=request.user, listing_id=listing_id)
    except NotFound:
        raise Http404("No such listing.") from None


def _reauth(request: AuthenticatedHttpRequest, exc: ReauthenticationRequired, here: str) -> HttpResponse:
    messages.warning(request, exc.message)
    target = exc.extra.get("reauth_url") or reverse("two_factor_verify")
    return redirect(f"{target}?{urlencode({'next': here})}")


@login_required
def marketplace(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = MarketplaceFilterForm(request.GET or None)
    filters = form.filters() if request.GET else {}
    page = Paginator(selectors.listing_list_public(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "marketplace/marketplace.html",
        {"form": form, "page": page, "listings": _decorate(list(page.object_list)), "query": query.urlencode()},
    )


@login_required
def my_listings(request: AuthenticatedHttpRequest) -> HttpResponse:
    listings = _decorate(list(selectors.listing_list_for_owner(user=request.user)[:200]))
    return render(request, "marketplace/my_listings.html", {"listings": listings})


def _listable_deployments(request: AuthenticatedHttpRequest) -> list[Deployment]:
    return list(
        Deployment.objects.filter(
            owner=request.user,
            kind=Deployment.Kind.STRATEGY,
            status__in=Deployment.RUNNING,
            listing__isnull=True,
        )
        .select_related("account")
        .order_by("-created_at")
    )


@login_required
def listing_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    deployments = _listable_deployments(request)
    if request.method == "POST":
        form = ListingForm(request.POST, deployments=deployments)
        if form.is_valid():
            try:
                listing = services.listing_create(owner=request.user, request=request, **form.service_kwargs())
            except ReauthenticationRequired as exc:
                return _reauth(request, exc, request.get_full_path())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                messages.success(request, "Listing saved as a draft: submit it for review when it reads well.")
                return redirect("marketplace:detail", listing_id=listing.pk)
    else:
        initial: dict[str, Any] = {}
        if request.GET.get("deployment"):
            initial["deployment_id"] = request.GET["deployment"]
        form = ListingForm(deployments=deployments, initial=initial)
    return render(
        request, "marketplace/listing_form.html", {"form": form, "listing": None, "has_deployments": bool(deployments)}
    )


@login_required
def listing_edit(request: AuthenticatedHttpRequest, listing_id: int) -> HttpResponse:
    listing = _owned(request, listing_id)
    if request.method == "POST":
        form = ListingForm(request.POST, editing=True)
        if form.is_valid():
            try:
                listing = services.listing_update(listing=listing, actor=request.user, **form.service_kwargs())
            except ApplicationError as exc:
                form.add_service_error(exc)
            else:
                if listing.status == Listing.Status.PENDING and listing.status_reason.startswith("Terms changed"):
                    messages.info(request, "Saved. The pricing changed, so the listing is back in review.")
                else:
                    messages.success(request, "Listing saved.")
                return redirect("marketplace:detail", listing_id=listing.pk)
    else:
        form = ListingForm(editing=True, initial=listing_initial(listing))
    return render(request, "marketplace/listing_form.html", {"form": form, "listing": listing, "has_deployments": True})


@login_required
@require_POST
def listing_submit(request: AuthenticatedHttpRequest, listing_id: int) -> HttpResponse:
    listing = _owned(request, listing_id)
    here = reverse("marketplace:detail", args=[listing.pk])
    try:
        services.listing_submit(listing=listing, actor=request.user, request=request)
    except ReauthenticationRequired as exc:
        return _reauth(request, exc, here)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Submitted for review: staff will approve it or tell you what to change.")
    return redirect(here)


@login_required
def listing_detail(request: AuthenticatedHttpRequest, listing_id: int) -> HttpResponse:
    listing = _get(request, listing_id)
    record = selectors.listing_track_record(listing=listing)
    is_owner = listing.owner_id == request.user.pk
    own_review = selectors.review_get_own(user=request.user, listing=listing)
    can_review = review_services.review_can_write(user=request.user, listing=listing)
    review_form = None
    if can_review:
        initial = {"rating": own_review.rating, "text": own_review.text} if own_review else {"rating": 5}
        review_form = ReviewForm(initial=initial)
    delay = selectors.listing_trade_delay_for(user=request.user, listing=listing)
    context = {
        "listing": listing,
        "record": record,
        "pct_return": percent(record["total_return"], signed=True),
        "pct_drawdown": percent(record["max_drawdown"]),
        "is_owner": is_owner,
        "can_edit": is_owner and listing.status in OWNER_EDITABLE,
        "can_submit": is_owner and listing.status in services.SUBMITTABLE,
        "trades": selectors.listing_recent_trades(user=request.user, listing=listing),
        "delay_minutes": int(delay.total_seconds() // 60),
        "backtests": selectors.listing_backtests(listing=listing),
        "reviews": list(selectors.review_list_for_listing(listing=listing)[:50]),
        "own_review": own_review,
        "review_form": review_form,
        "subscribe_url": subscribe_url(listing.pk),
        "chart_config": {"curve": record["curve"], "label": record["label"], "currency": listing.currency},
    }
    return render(request, "marketplace/listing_detail.html", context)


@login_required
@require_POST
def listing_review(request: AuthenticatedHttpRequest, listing_id: int) -> HttpResponse:
    listing = _get(request, listing_id)
    here = reverse("marketplace:detail", args=[listing.pk])
    form = ReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Rate from 1 to 5 stars; keep the text under 4,000 characters.")
        return redirect(here)
    try:
        review_services.review_save(
            author=request.user, listing=listing, rating=form.cleaned_data["rating"], text=form.cleaned_data["text"]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Thank you: your review is saved.")
    return redirect(f"{here}#reviews")


urlpatterns: list[URLPattern] = [
    path("", marketplace, name="list"),
    path("mine/", my_listings, name="mine"),
    path("publish/", listing_new, name="new"),
    path("<int:listing_id>/", listing_detail, name="detail"),
    path("<int:listing_id>/edit/", listing_edit, name="edit"),
    path("<int:listing_id>/submit/", listing_submit, name="submit"),
    path("<int:listing_id>/review/", listing_review, name="review"),
]
