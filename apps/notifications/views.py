"""Portal pages of notifications:

- ``/notifications/``: the notification centre, unread first; mark one or all read; new ones
  arrive live (static/notifications/centre.js) and the bell in the top bar follows.
- ``/notifications/settings/``: channels (e-mail, Telegram linking, webhook URL and secret with
  the signature scheme), alert rules, quiet hours, the daily summary hour, and the delivery log.

Reads go through the selectors, writes through the services; a refusal is shown at the input
it names or as a message.
"""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_POST

from apps.common.errors import ApplicationError, NotFound
from apps.notifications import selectors
from apps.notifications.forms import AlertRuleForm, SettingsForm
from apps.notifications.models import THRESHOLD_EVENTS, Event
from apps.notifications.services import preferences, telegram_link
from apps.notifications.services.notify import notification_mark_all_read, notification_mark_read
from apps.users.requests import AuthenticatedHttpRequest

PAGE_ROWS = 50


def _form_errors(form: Any, exc: ApplicationError) -> None:
    fields = exc.extra.get("fields") or {}
    placed = False
    for name, errors in fields.items():
        if name in form.fields:
            for error in errors:
                form.add_error(name, error)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


@login_required
def centre(request: AuthenticatedHttpRequest) -> HttpResponse:
    qs = selectors.notification_list_for_user(user=request.user)
    page = Paginator(qs, PAGE_ROWS).get_page(request.GET.get("page"))
    return render(
        request,
        "notifications/centre.html",
        {"page": page, "unread": selectors.notification_unread_count(user_id=request.user.pk)},
    )


@login_required
@require_POST
def mark_read(request: AuthenticatedHttpRequest, notification_id: int) -> HttpResponse:
    try:
        notification_mark_read(user=request.user, notification_id=notification_id)
    except NotFound:
        raise Http404("No such notification.") from None
    return redirect("notifications:centre")


@login_required
@require_POST
def mark_all_read(request: AuthenticatedHttpRequest) -> HttpResponse:
    count = notification_mark_all_read(user=request.user)
    messages.success(request, f"Marked {count} notification{'s' if count != 1 else ''} read.")
    return redirect("notifications:centre")


def _settings_page(request: AuthenticatedHttpRequest, **overrides: Any) -> HttpResponse:
    prefs = selectors.notification_settings_for_user(user=request.user)
    context = {
        "prefs": prefs,
        "settings_form": SettingsForm(initial=SettingsForm.initial_from(prefs)),
        "rule_form": AlertRuleForm(),
        "rules": list(selectors.alert_rule_list_for_user(user=request.user)),
        "deliveries": list(selectors.delivery_list_for_user(user=request.user)[:PAGE_ROWS]),
        "event_labels": dict(Event.choices),
        "threshold_events": {str(k): v for k, v in THRESHOLD_EVENTS.items()},
        "telegram_enabled": bool(getattr(settings, "TELEGRAM_BOT_TOKEN", "")),
        "telegram_bot": getattr(settings, "TELEGRAM_BOT_USERNAME", ""),
        **overrides,
    }
    status = 400 if any(getattr(f, "errors", None) for f in overrides.values()) else 200
    return render(request, "notifications/settings.html", context, status=status)


@login_required
def settings_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _settings_page(request)
    form = SettingsForm(request.POST)
    if form.is_valid():
        try:
            preferences.notification_settings_update(user=request.user, request=request, **form.cleaned_data)
        except ApplicationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Notification settings saved.")
            return redirect("notifications:settings")
    return _settings_page(request, settings_form=form)


@login_required
@require_POST
def rule_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = AlertRuleForm(request.POST)
    if form.is_valid():
        try:
            preferences.alert_rule_create(user=request.user, request=request, **form.cleaned_data)
        except ApplicationError as exc:
            _form_errors(form, exc)
        else:
            messages.success(request, "Alert rule added.")
            return redirect("notifications:settings")
    return _settings_page(request, rule_form=form)


@login_required
@require_POST
def rule_toggle(request: AuthenticatedHttpRequest, rule_id: int) -> HttpResponse:
    try:
        rule = selectors.alert_rule_get_for_user(user=request.user, rule_id=rule_id)
    except NotFound:
        raise Http404("No such rule.") from None
    preferences.alert_rule_update(rule=rule, user=request.user, request=request, is_enabled=not rule.is_enabled)
    return redirect("notifications:settings")


@login_required
@require_POST
def rule_delete(request: AuthenticatedHttpRequest, rule_id: int) -> HttpResponse:
    try:
        rule = selectors.alert_rule_get_for_user(user=request.user, rule_id=rule_id)
    except NotFound:
        raise Http404("No such rule.") from None
    preferences.alert_rule_delete(rule=rule, user=request.user, request=request)
    messages.success(request, "Alert rule deleted.")
    return redirect("notifications:settings")


@login_required
@require_POST
def webhook_secret_rotate(request: AuthenticatedHttpRequest) -> HttpResponse:
    secret = preferences.webhook_secret_rotate(user=request.user, request=request)
    # Shown on this one page only; afterwards masked.
    return _settings_page(request, new_webhook_secret=secret)


@login_required
@require_POST
def telegram_link_start(request: AuthenticatedHttpRequest) -> HttpResponse:
    telegram_link.telegram_link_start(user=request.user, request=request)
    return redirect("notifications:settings")


@login_required
@require_POST
def telegram_unlink(request: AuthenticatedHttpRequest) -> HttpResponse:
    telegram_link.telegram_unlink(user=request.user, request=request)
    messages.success(request, "Telegram unlinked.")
    return redirect("notifications:settings")


urlpatterns_list: list[URLPattern] = [
    path("", centre, name="centre"),
    path("<int:notification_id>/read/", mark_read, name="read"),
    path("read-all/", mark_all_read, name="read-all"),
    path("settings/", settings_page, name="settings"),
    path("settings/rules/", rule_create, name="rule-create"),
    path("settings/rules/<int:rule_id>/toggle/", rule_toggle, name="rule-toggle"),
    path("settings/rules/<int:rule_id>/delete/", rule_delete, name="rule-delete"),
    path("settings/webhook-secret/", webhook_secret_rotate, name="webhook-secret"),
    path("settings/telegram/", telegram_link_start, name="telegram-link"),
    path("settings/telegram/unlink/", telegram_unlink, name="telegram-unlink"),
]
