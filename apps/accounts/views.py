"""Portal pages of trading accounts: the list, one connect form per kind, the account page
(status, masked key, balances and permissions of the last test, "Test connection"), edit,
replace key, disable.

Every account is read through the selectors (another user's is a 404), every write goes
through a service, and a service's error is shown at the input it names with the other values
kept (secrets are typed again: they are never rendered back). Connecting a live account needs a
second factor verified in the last 15 minutes: the form asks for a code first when it is not.

"Test connection" (and connecting, which queues a first test) leads to the account's page with
``?testing=<stamp>``, the stamp of the test result the user had then: the page says "Testing…"
while its result is still that one. It follows the owner's ``account.tested`` events over the
websocket (static/js/account_live.js), with a poll of ``status/`` as fallback (an event sent
before the socket opened is not replayed), and refreshes its content in place with the result.
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts import selectors, services
from apps.accounts.forms import (
    AccountEditForm,
    ExchangeAccountForm,
    IbAccountForm,
    PaperAccountForm,
    ReconnectForm,
    ServiceErrorForm,
)
from apps.accounts.models import TradingAccount
from apps.common.errors import ApplicationError, NotFound, ReauthenticationRequired
from apps.users.forms import CodeForm
from apps.users.requests import AuthenticatedHttpRequest
from apps.users.second_factor import second_factor_is_fresh
from apps.users.selectors import user_has_second_factor

KIND_TITLES = {"paper": "Paper account", "exchange": "Exchange account (ccxt)", "ib": "Interactive Brokers"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _test_stamp(account: TradingAccount) -> str:
    """The last test's time as microseconds since the epoch ("0": never tested), exact so that
    equal stamps mean the same result."""
    if account.last_tested_at is None:
        return "0"
    return str((account.last_tested_at - _EPOCH) // timedelta(microseconds=1))


def _amount_text(value: Any) -> str:
    """A stored amount ("25000.0000000000", "0E-10") as a person writes it ("25000", "0")."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not amount.is_finite():
        return str(value)
    return f"{amount.normalize():f}" if amount else "0"


def _balances_text(balances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**b, "free": _amount_text(b.get("free")), "locked": _amount_text(b.get("locked"))} for b in balances]


def _testing_url(account: TradingAccount) -> str:
    """The account's page, waiting for a test result newer than the one it has now."""
    return f"{reverse('accounts:detail', args=[account.pk])}?testing={_test_stamp(account)}"


def _account(request: AuthenticatedHttpRequest, account_id: int) -> TradingAccount:
    try:
        return selectors.account_get_for_user(user=request.user, account_id=account_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def _factor_context(request: AuthenticatedHttpRequest) -> dict[str, Any]:
    return {
        "has_2fa": user_has_second_factor(user=request.user),
        "is_fresh": second_factor_is_fresh(request, request.user),
        "code_form": CodeForm(),
        "fresh_minutes": settings.SECOND_FACTOR_FRESH_SECONDS // 60,
    }


def _submit(form: ServiceErrorForm, call: Any) -> TradingAccount | None:
    try:
        result: TradingAccount = call()
    except ReauthenticationRequired as exc:
        form.add_error(None, exc.message)
    except ApplicationError as exc:
        form.add_service_error(exc)
    else:
        return result
    return None


@login_required
def account_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    accounts = selectors.account_list_for_user(user=request.user)
    return render(request, "accounts/list.html", {"accounts": accounts})


@login_required
def account_connect(request: AuthenticatedHttpRequest, kind: str) -> HttpResponse:
    forms_by_kind: dict[str, type[ServiceErrorForm]] = {
        "paper": PaperAccountForm,
        "exchange": ExchangeAccountForm,
        "ib": IbAccountForm,
    }
    if kind not in forms_by_kind:
        raise Http404("No such kind of account.")
    form_class = forms_by_kind[kind]
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        account: TradingAccount | None
        if isinstance(form, PaperAccountForm):
            account = _submit(
                form,
                lambda: services.account_connect_paper(owner=request.user, request=request, **form.service_kwargs()),
            )
        elif isinstance(form, ExchangeAccountForm):
            account = _submit(
                form,
                lambda: services.account_connect_exchange(
                    owner=request.user,
                    request=request,
                    name=data["name"],
                    exchange_id=data["exchange_id"],
                    api_key=data["api_key"],
                    secret=data["secret"],
                    password=data.get("password") or "",
                    market_type=data["market_type"],
                    is_testnet=bool(data.get("is_testnet")),
                ),
            )
        else:
            account = _submit(
                form,
                lambda: services.account_connect_ib(
                    owner=request.user,
                    request=request,
                    name=data["name"],
                    host=data["host"],
                    port=data["port"],
                    client_id=data["client_id"],
                    account_code=data["account_code"],
                    base_currency=data["base_currency"],
                ),
            )
        if account is not None:
            messages.success(request, f"Connected “{account.name}”. Its connection is being tested.")
            return redirect(_testing_url(account))
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "kind": kind, "title": KIND_TITLES[kind], "is_live": kind != "paper"}
    context.update(_factor_context(request))
    return render(request, "accounts/connect.html", context, status=status)


def _test_config(request: AuthenticatedHttpRequest, account: TradingAccount) -> dict[str, Any]:
    return {
        "id": account.pk,
        "testedAt": account.last_tested_at.isoformat() if account.last_tested_at else None,
        "statusUrl": reverse("accounts:status", args=[account.pk]),
    }


@login_required
def account_detail(request: AuthenticatedHttpRequest, account_id: int) -> HttpResponse:
    account = _account(request, account_id)
    last_test = account.last_test or {}
    context = {
        "account": account,
        "last_test": last_test,
        "permissions": last_test.get("permissions") or {},
        "balances": _balances_text(last_test.get("balances") or []),
        "edit_form": AccountEditForm(
            initial={
                "name": account.name,
                "risk_limits": json.dumps(account.risk_limits, indent=2) if account.risk_limits else "",
            }
        ),
        "test_config": _test_config(request, account),
        "connection": {k: v for k, v in (account.connection or {}).items() if k != "costs"},
        "costs": (account.connection or {}).get("costs") or {},
        "testing": request.GET.get("testing") == _test_stamp(account),
    }
    return render(request, "accounts/detail.html", context)


@login_required
def account_status(request: AuthenticatedHttpRequest, account_id: int) -> JsonResponse:
    account = _account(request, account_id)
    return JsonResponse(
        {
            "id": account.pk,
            "status": account.status,
            "trading_state": account.trading_state,
            "tested_at": account.last_tested_at.isoformat() if account.last_tested_at else None,
            "ok": (account.last_test or {}).get("ok"),
        }
    )


@login_required
@require_POST
def account_test(request: AuthenticatedHttpRequest, account_id: int) -> HttpResponse:
    account = _account(request, account_id)
    try:
        services.account_test_request(account=account, actor=request.user, request=request)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("accounts:detail", account_id=account.pk)
    messages.info(request, "Testing the connection… the result appears here.")
    return redirect(_testing_url(account))


@login_required
def account_edit(request: AuthenticatedHttpRequest, account_id: int) -> HttpResponse:
    account = _account(request, account_id)
    form = AccountEditForm(
        request.POST or None,
        initial={
            "name": account.name,
            "risk_limits": json.dumps(account.risk_limits, indent=2) if account.risk_limits else "",
        },
    )
    if request.method == "POST" and form.is_valid():
        updated = _submit(
            form,
            lambda: services.account_update(
                account=account,
                actor=request.user,
                request=request,
                name=form.cleaned_data["name"],
                risk_limits=form.cleaned_data["risk_limits"],
            ),
        )
        if updated is not None:
            messages.success(request, "Saved.")
            return redirect("accounts:detail", account_id=account.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/edit.html", {"account": account, "form": form}, status=status)


@login_required
def account_reconnect(request: AuthenticatedHttpRequest, account_id: int) -> HttpResponse:
    account = _account(request, account_id)
    if account.kind != TradingAccount.Kind.CCXT:
        raise Http404("Only exchange accounts have a key to replace.")
    form = ReconnectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        updated = _submit(
            form,
            lambda: services.account_reconnect_exchange(
                account=account,
                request=request,
                api_key=data["api_key"],
                secret=data["secret"],
                password=data.get("password") or "",
            ),
        )
        if updated is not None:
            messages.success(request, "The new key is stored and the account is active again.")
            return redirect("accounts:detail", account_id=account.pk)
    status = 400 if request.method == "POST" else 200
    context = {"account": account, "form": form}
    context.update(_factor_context(request))
    return render(request, "accounts/reconnect.html", context, status=status)


@login_required
@require_POST
def account_disable(request: AuthenticatedHttpRequest, account_id: int) -> HttpResponse:
    account = _account(request, account_id)
    try:
        services.account_disable(account=account, actor=request.user, request=request)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("accounts:detail", account_id=account.pk)
    messages.success(request, f"Disabled “{account.name}”; its key was deleted.")
    return redirect("accounts:list")
