"""Portal pages of the strategies app: the catalogue of pre-built strategies, one strategy's
documentation and parameters, and the rule strategy editor (list, new, edit, delete).

Reads go through the selectors (rule sets are owner-scoped: another user's is a 404), writes
through the services; an error a service raises is shown at the box it names.
"""

import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from apps.common.errors import ApplicationError, NotFound
from apps.strategies import selectors, services
from apps.strategies.forms import SLOTS, RuleSetForm
from apps.strategies.models import RuleSet
from apps.users.requests import AuthenticatedHttpRequest

_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_CODE = re.compile(r"``?([^`]+?)``?")


def inline_markup(text: str) -> SafeString:
    """The light markup docstrings use (``**bold**``, ``*italic*``, ```code```) as HTML; the
    text is escaped first, so nothing else can become markup."""
    html = str(escape(text))
    html = _CODE.sub(r"<code>\1</code>", html)
    html = _STRONG.sub(r"<strong>\1</strong>", html)
    html = _EMPHASIS.sub(r"<em>\1</em>", html)
    return mark_safe(html)  # noqa: S308 - escaped above; only the three tags are added


def documentation_blocks(text: str) -> list[dict[str, Any]]:
    """A docstring as blocks for the page: paragraphs (lines joined) and bullet lists (a
    paragraph whose every line starts with ``-`` or ``*``), with :func:`inline_markup`."""
    blocks: list[dict[str, Any]] = []
    for paragraph in text.strip().split("\n\n"):
        lines = [line.strip() for line in paragraph.strip().splitlines() if line.strip()]
        if not lines:
            continue
        if all(line[:2] in ("- ", "* ") for line in lines):
            blocks.append({"kind": "list", "items": [inline_markup(line[2:].strip()) for line in lines]})
        elif lines[0][:2] in ("- ", "* ") and all(
            line[:2] in ("- ", "* ") or not line.startswith(("-", "*")) for line in lines
        ):
            # Bullets whose text wraps onto indented continuation lines.
            items: list[str] = []
            for line in lines:
                if line[:2] in ("- ", "* "):
                    items.append(line[2:].strip())
                else:
                    items[-1] = f"{items[-1]} {line}"
            blocks.append({"kind": "list", "items": [inline_markup(item) for item in items]})
        else:
            blocks.append({"kind": "paragraph", "text": inline_markup(" ".join(lines))})
    return blocks


def param_rows(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per parameter of a Params JSON schema: name, type, default, bounds, help."""
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        rows.append(
            {
                "name": name,
                "type": prop.get("type", ""),
                "default": prop.get("default"),
                "minimum": prop.get("minimum"),
                "maximum": prop.get("maximum"),
                "step": prop.get("multipleOf"),
                "choices": prop.get("enum"),
                "help": prop.get("description", ""),
            }
        )
    return rows


def indicator_help(indicators: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The editor's help panel: each indicator with a ready-to-type example call and its
    arguments' defaults and bounds."""
    rows = []
    for item in indicators:
        args = item.get("args") or []
        call = item["name"] + (f"({', '.join(str(a['default']) for a in args)})" if args else "")
        outputs = item.get("outputs") or []
        rows.append(
            {
                "name": item["name"],
                "label": item.get("label") or item["name"],
                "help": item.get("help", ""),
                "example": f"{call}.{outputs[0]}" if outputs else call,
                "args": args,
                "outputs": outputs,
            }
        )
    return rows


@login_required
def catalogue(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(
        request,
        "strategies/catalogue.html",
        {
            "strategies": selectors.strategy_catalogue(),
            "rule_sets": selectors.rule_set_list_for_user(user=request.user),
        },
    )


@login_required
def strategy_detail(request: AuthenticatedHttpRequest, key: str) -> HttpResponse:
    try:
        strategy = selectors.strategy_get(key=key)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(
        request,
        "strategies/detail.html",
        {
            "strategy": strategy,
            "blocks": documentation_blocks(strategy["documentation"]),
            "params": param_rows(strategy["params_schema"]),
            "backtest_url": f"{reverse('backtests:new')}?strategy={strategy['key']}",
        },
    )


def _rule_set_or_404(request: AuthenticatedHttpRequest, rule_set_id: int) -> RuleSet:
    try:
        return selectors.rule_set_get_for_user(user=request.user, rule_set_id=rule_set_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


@login_required
def rule_set_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    rule_sets = selectors.rule_set_list_for_user(user=request.user)
    rows = []
    for rule_set in rule_sets:
        text = services.rules_as_text(rules=rule_set.rules)
        rows.append({"rule_set": rule_set, "conditions": [(label, text.get(slot)) for slot, label, _ in SLOTS]})
    return render(request, "strategies/rule_list.html", {"rows": rows})


def _initial_of(rule_set: RuleSet) -> dict[str, Any]:
    text = services.rules_as_text(rules=rule_set.rules)
    return {"name": rule_set.name, "description": rule_set.description, **{k: v or "" for k, v in text.items()}}


def _rule_editor(request: AuthenticatedHttpRequest, rule_set: RuleSet | None) -> HttpResponse:
    """The editor for a new (``rule_set`` None) or existing rule set. ``action=preview`` shows
    the JSON the conditions compile to without saving."""
    preview: dict[str, Any] | None = rule_set.rules if rule_set is not None else None
    if request.method == "POST":
        form = RuleSetForm(request.POST)
        preview = None
        if form.is_valid():
            try:
                rules = services.rules_normalise(conditions=form.conditions())
                preview = rules
                if request.POST.get("action") != "preview":
                    data = form.cleaned_data
                    if rule_set is None:
                        rule_set = services.rule_set_create(
                            owner=request.user, name=data["name"], description=data["description"], rules=rules
                        )
                        messages.success(request, f"Rule strategy “{rule_set.name}” saved.")
                    else:
                        services.rule_set_update(
                            rule_set=rule_set, name=data["name"], description=data["description"], rules=rules
                        )
                        messages.success(request, f"Rule strategy “{rule_set.name}” updated.")
                    return redirect("strategies:rule-edit", rule_set_id=rule_set.pk)
            except ApplicationError as exc:
                form.add_service_error(exc)
    else:
        form = RuleSetForm(initial=_initial_of(rule_set) if rule_set is not None else None)
    return render(
        request,
        "strategies/rule_edit.html",
        {
            "form": form,
            "rule_set": rule_set,
            "indicators": indicator_help(selectors.rule_indicators()),
            "rules_json": json.dumps(preview, indent=2) if preview else "",
            "backtest_url": f"{reverse('backtests:new')}?strategy=rules:{rule_set.pk}" if rule_set else "",
        },
    )


@login_required
def rule_set_new(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _rule_editor(request, None)


@login_required
def rule_set_edit(request: AuthenticatedHttpRequest, rule_set_id: int) -> HttpResponse:
    return _rule_editor(request, _rule_set_or_404(request, rule_set_id))


@login_required
def rule_set_delete(request: AuthenticatedHttpRequest, rule_set_id: int) -> HttpResponse:
    rule_set = _rule_set_or_404(request, rule_set_id)
    if request.method == "POST":
        name = rule_set.name
        services.rule_set_delete(rule_set=rule_set)
        messages.success(request, f"Rule strategy “{name}” deleted. Backtests that used it keep their copy.")
        return redirect("strategies:rule-list")
    return render(request, "strategies/rule_delete.html", {"rule_set": rule_set})
