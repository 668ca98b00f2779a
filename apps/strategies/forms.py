"""Portal forms of the strategies app: the rule strategy editor.

Conditions are typed in the text form (``rsi(14) < 30 and close > sma(200)``). The services
name the field of every error (``name``, ``conditions.<slot>``, ``rules.<slot>.all[0]...``);
:meth:`RuleSetForm.add_service_error` puts each message at the box that caused it.
"""

from collections.abc import Mapping
from typing import Any

from django import forms

from apps.common.errors import ApplicationError

SLOTS: tuple[tuple[str, str, str], ...] = (
    ("enter_long", "Enter long when", "e.g. rsi(14) < 30 and close > sma(200)"),
    ("exit_long", "Exit long when", "e.g. rsi(14) > 70"),
    ("enter_short", "Enter short when", "leave empty to never go short"),
    ("exit_short", "Exit short when", "e.g. close crosses_above ema(50)"),
)


class RuleSetForm(forms.Form):
    name = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    enter_long = forms.CharField(required=False)
    exit_long = forms.CharField(required=False)
    enter_short = forms.CharField(required=False)
    exit_short = forms.CharField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for slot, label, placeholder in SLOTS:
            field = self.fields[slot]
            field.label = label
            field.widget = forms.Textarea(
                attrs={"rows": 2, "placeholder": placeholder, "spellcheck": "false", "class": "condition"}
            )

    def conditions(self) -> dict[str, str]:
        """The text of each slot, as typed (call after is_valid())."""
        return {slot: self.cleaned_data.get(slot, "") or "" for slot, _, _ in SLOTS}

    def slot_fields(self) -> list[forms.BoundField]:
        return [self[slot] for slot, _, _ in SLOTS]

    def field_for_path(self, path: str) -> str | None:
        """The input that shows an error about ``path`` (None: the form as a whole)."""
        head, _, rest = path.partition(".")
        if head in ("conditions", "rules") and rest:
            slot = rest.split(".", 1)[0].split("[", 1)[0]
            return slot if slot in self.fields else None
        return head if head in self.fields and not rest else None

    def add_service_error(self, exc: ApplicationError) -> None:
        fields = exc.extra.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            self.add_error(None, exc.message)
            return
        for path, messages in fields.items():
            target = self.field_for_path(str(path))
            for message in [messages] if isinstance(messages, str) else list(messages):
                self.add_error(target, str(message))
