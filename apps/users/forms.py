from django import forms
from django.conf import settings


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
        help_text="6 digits from your authenticator app, or one of your backup codes.",
    )


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=80, help_text="What the token is for, e.g. 'my trading bot'.")
    ttl_days = forms.IntegerField(
        label="Expires after (days)", initial=90, min_value=1, max_value=settings.API_TOKEN_MAX_TTL_DAYS
    )
