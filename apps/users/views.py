"""Portal pages of the users app: dashboard, two-factor settings, API tokens."""

import base64
from io import BytesIO

import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.audit.selectors import security_event_list_for_user
from apps.common.errors import ApplicationError
from apps.users import services
from apps.users.forms import CodeForm, TokenCreateForm
from apps.users.requests import AuthenticatedHttpRequest
from apps.users.second_factor import second_factor_is_fresh
from apps.users.selectors import api_token_list_for_user, backup_codes_remaining, user_has_second_factor


def _safe_next(request: HttpRequest, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@login_required
def dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(
        request,
        "users/dashboard.html",
        {
            "events": security_event_list_for_user(user=request.user),
            "has_2fa": user_has_second_factor(user=request.user),
        },
    )


@login_required
def two_factor_index(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(
        request,
        "users/two_factor_index.html",
        {
            "has_2fa": user_has_second_factor(user=request.user),
            "backup_left": backup_codes_remaining(user=request.user),
            "is_fresh": second_factor_is_fresh(request, request.user),
            "form": CodeForm(),
        },
    )


@login_required
def two_factor_setup(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    if user_has_second_factor(user=user):
        messages.info(request, "Two-factor authentication is already on.")
        return redirect("two_factor_index")
    form = CodeForm(request.POST or None)
    device = services.two_factor_pending_device(user=user)
    if request.method == "POST" and device is not None and form.is_valid():
        try:
            codes = services.two_factor_setup_confirm(request=request, user=user, token=form.cleaned_data["code"])
        except ApplicationError as exc:
            form.add_error("code", exc.message)
        else:
            messages.success(request, "Two-factor authentication is on.")
            return render(
                request,
                "users/backup_codes.html",
                {
                    "codes": codes,
                    "next": _safe_next(request, ""),
                },
            )
    if device is None:
        # Reuse a pending device on reload, so a key already scanned keeps working.
        device = services.two_factor_setup_begin(user=user)
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return render(
        request,
        "users/two_factor_setup.html",
        {
            "form": form,
            "qr": _qr_svg(device.config_url),
            "secret": secret,
            "next": _safe_next(request, ""),
        },
    )


@login_required
def two_factor_verify(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    next_url = _safe_next(request, "/")
    if not user_has_second_factor(user=user):
        return redirect(next_url)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            method = services.two_factor_verify(request=request, user=user, token=form.cleaned_data["code"])
        except ApplicationError as exc:
            form.add_error("code", exc.message)
        else:
            if method == "backup":
                left = backup_codes_remaining(user=user)
                messages.warning(request, f"Backup code used; {left} left.")
            return redirect(next_url)
    status = 400 if request.method == "POST" else 200
    return render(request, "users/two_factor_verify.html", {"form": form, "next": next_url}, status=status)


@login_required
@require_POST
def two_factor_disable(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = CodeForm(request.POST)
    if form.is_valid():
        try:
            services.two_factor_disable(request=request, user=request.user, token=form.cleaned_data["code"])
        except ApplicationError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, "Two-factor authentication is off.")
    else:
        messages.error(request, "Enter a current code to turn two-factor authentication off.")
    return redirect("two_factor_index")


@login_required
@require_POST
def backup_codes_regenerate(request: AuthenticatedHttpRequest) -> HttpResponse:
    try:
        codes = services.backup_codes_regenerate(request=request, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("two_factor_index")
    return render(request, "users/backup_codes.html", {"codes": codes, "next": ""})


@login_required
def tokens(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                created = services.api_token_create(
                    request=request,
                    user=request.user,
                    name=form.cleaned_data["name"],
                    ttl_days=form.cleaned_data["ttl_days"],
                )
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = 403 if exc.status_code == 403 else 400
            else:
                form = TokenCreateForm()
        else:
            status = 400
    return render(
        request,
        "users/tokens.html",
        {
            "form": form,
            "created": created,
            "tokens": api_token_list_for_user(user=request.user),
            "is_fresh": second_factor_is_fresh(request, request.user),
            "has_2fa": user_has_second_factor(user=request.user),
            "code_form": CodeForm(),
        },
        status=status,
    )


@login_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, public_id: str) -> HttpResponse:
    try:
        services.api_token_revoke(request=request, user=request.user, public_id=public_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Token revoked.")
    return redirect("tokens")
