import zoneinfo
from typing import Any

from django import forms

from apps.notifications.models import Channel, Event, NotificationSettings

TIMEZONES = sorted(zoneinfo.available_timezones())


class SettingsForm(forms.Form):
    email_enabled = forms.BooleanField(required=False, label="E-mail to my address")
    webhook_url = forms.URLField(required=False, max_length=500, label="Webhook URL", assume_scheme="https")
    timezone = forms.ChoiceField(choices=[(z, z) for z in TIMEZONES], initial="UTC", label="My time zone")
    quiet_start = forms.TimeField(
        required=False, label="Quiet hours from", widget=forms.TimeInput(attrs={"type": "time"})
    )
    quiet_end = forms.TimeField(required=False, label="until", widget=forms.TimeInput(attrs={"type": "time"}))
    quiet_mode = forms.ChoiceField(choices=NotificationSettings.QuietMode.choices, label="During quiet hours")
    daily_summary_hour = forms.TypedChoiceField(
        choices=[("", "no summary"), *[(h, f"{h:02d}:00") for h in range(24)]],
        coerce=int,
        empty_value=None,
        required=False,
        label="Daily P&L summary at",
    )

    @staticmethod
    def initial_from(prefs: NotificationSettings) -> dict[str, Any]:
        return {
            "email_enabled": prefs.email_enabled,
            "webhook_url": prefs.webhook_url,
            "timezone": prefs.timezone,
            "quiet_start": prefs.quiet_start,
            "quiet_end": prefs.quiet_end,
            "quiet_mode": prefs.quiet_mode,
            "daily_summary_hour": prefs.daily_summary_hour,
        }


class AlertRuleForm(forms.Form):
    name = forms.CharField(required=False, max_length=80)
    events = forms.MultipleChoiceField(choices=Event.choices, widget=forms.CheckboxSelectMultiple)
    channels = forms.MultipleChoiceField(choices=Channel.choices, widget=forms.CheckboxSelectMultiple)
    threshold = forms.DecimalField(
        required=False,
        max_digits=28,
        decimal_places=10,
        help_text="Daily loss: amount in the account currency; drawdown: percent. Empty = every event.",
    )
