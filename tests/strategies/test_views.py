"""Portal pages of the strategies app: the catalogue, a strategy's page, and the rule strategy
editor (errors at the box that caused them, the JSON on request, owner scoping)."""

import json
import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from apps.common.errors import ApplicationError
from apps.strategies import services
from apps.strategies.models import RuleSet
from apps.strategies.params import params_schema
from apps.strategies.registry import strategy_class, strategy_classes
from apps.strategies.rules.catalogue import rule_indicators

pytestmark = pytest.mark.django_db

RSI_ENTRY = "rsi(14) < 30 and close > sma(200)"
RSI_EXIT = "rsi(14) > 70"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def field_block(html: str, name: str) -> str:
    """The markup of the form field block whose data-field is ``name``."""
    match = re.search(rf'<div class="field[^"]*" data-field="{re.escape(name)}"', html)
    assert match, f"no field block for {name}"
    rest = html[match.start() :]
    return rest[: rest.index("</div>") + 6]


def textarea_value(html: str, name: str) -> str:
    """What the textarea ``name`` holds (unescaped; Django adds a leading newline)."""
    match = re.search(rf'<textarea name="{re.escape(name)}"[^>]*>(.*?)</textarea>', html, re.S)
    assert match, f"no textarea {name}"
    return unescape(match.group(1)).lstrip("\n")


def make_rule_set(owner: Any, name: str = "RSI dip") -> RuleSet:
    rules = services.rules_normalise(conditions={"enter_long": RSI_ENTRY, "exit_long": RSI_EXIT})
    return services.rule_set_create(owner=owner, name=name, description="Buy oversold dips in an uptrend", rules=rules)


def test_strategy_pages_need_a_login(web_client, alice):
    rule_set = make_rule_set(alice)
    for url in (
        "/strategies/",
        "/strategies/sma_cross/",
        "/strategies/rules/",
        "/strategies/rules/new/",
        f"/strategies/rules/{rule_set.pk}/edit/",
        f"/strategies/rules/{rule_set.pk}/delete/",
    ):
        response = web_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/")


def test_catalogue_lists_every_public_strategy_and_only_my_rule_sets(alice, bob):
    mine = make_rule_set(alice, "Mine")
    theirs = make_rule_set(bob, "Bob's secret")

    html = client_for(alice).get("/strategies/").content.decode()

    for cls in strategy_classes():
        assert f'data-key="{cls.key}"' in html
        assert f'href="/strategies/{cls.key}/"' in html
        assert f'href="/backtests/new/?strategy={cls.key}"' in html
    assert {cls.key for cls in strategy_classes()} >= {"sma_cross", "ema_cross", "rsi_mean_reversion"}
    assert f'data-rule-set-id="{mine.pk}"' in html
    assert f'data-rule-set-id="{theirs.pk}"' not in html and "Bob&#x27;s secret" not in html
    assert 'href="/strategies/rules/new/"' in html


def test_catalogue_says_how_to_start_when_i_have_no_rule_sets(alice):
    html = client_for(alice).get("/strategies/").content.decode()
    assert "No rule strategies yet" in html


def test_nav_links_to_strategies_and_backtests(alice):
    html = client_for(alice).get("/").content.decode()
    assert 'href="/strategies/">Strategies</a>' in html
    assert 'href="/backtests/">Backtests</a>' in html


def test_strategy_page_shows_its_documentation_and_parameters(alice):
    cls = strategy_class("sma_cross")
    schema = params_schema(cls.Params)

    response = client_for(alice).get("/strategies/sma_cross/")
    html = response.content.decode()

    assert response.status_code == 200
    text = " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())
    for paragraph in cls.documentation().split("\n\n"):
        # Every paragraph is shown, its **bold** and *italic* markers turned into markup.
        assert " ".join(paragraph.replace("*", "").split()) in text
    assert "**" not in html.split('class="card documentation"')[1].split("</section>")[0]
    for name, prop in schema["properties"].items():
        row = html.split(f'data-param="{name}"')[1].split("</tr>")[0]
        assert f">{prop['default']}<" in row
        for bound in ("minimum", "maximum"):
            if bound in prop:
                assert f">{prop[bound]}<" in row
    assert 'href="/backtests/new/?strategy=sma_cross"' in html and "Backtest this" in html


def test_unknown_or_hidden_strategy_is_404(alice):
    client = client_for(alice)
    assert client.get("/strategies/no_such_thing/").status_code == 404
    hidden = [cls for cls in strategy_classes(public_only=False) if not cls.is_public]
    for cls in hidden:
        assert client.get(f"/strategies/{cls.key}/").status_code == 404


def test_rule_editor_offers_four_boxes_and_the_indicator_help(alice):
    html = client_for(alice).get("/strategies/rules/new/").content.decode()
    for slot in ("enter_long", "exit_long", "enter_short", "exit_short"):
        assert f'name="{slot}"' in html
    help_panel = html.split('id="rule-help"')[1]
    for indicator in rule_indicators():
        assert f"<code>{indicator['name']}" in help_panel


def test_saving_a_rule_strategy_stores_the_normalised_rules(alice):
    client = client_for(alice)
    response = client.post(
        "/strategies/rules/new/",
        {"name": "RSI dip", "description": "dips", "enter_long": RSI_ENTRY, "exit_long": RSI_EXIT, "action": "save"},
    )
    rule_set = RuleSet.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/strategies/rules/{rule_set.pk}/edit/"
    expected = services.rules_normalise(conditions={"enter_long": RSI_ENTRY, "exit_long": RSI_EXIT})
    assert rule_set.rules == expected
    assert rule_set.rules["enter_short"] is None

    # The edit page shows the text form back, and a button to backtest it.
    html = client.get(response["Location"]).content.decode()
    enter = services.rules_as_text(rules=expected)["enter_long"]
    assert enter is not None and textarea_value(html, "enter_long") == enter
    assert f'href="/backtests/new/?strategy=rules:{rule_set.pk}"' in html


def test_a_bad_condition_is_shown_at_its_box_and_nothing_is_lost(alice):
    client = client_for(alice)
    bad_exit = "rsi(14) > 70 and wobble(3) > 1"
    with pytest.raises(ApplicationError) as caught:
        services.rules_normalise(conditions={"enter_long": RSI_ENTRY, "exit_long": bad_exit})
    expected_message = next(iter(caught.value.extra["fields"].values()))[0]

    response = client.post(
        "/strategies/rules/new/",
        {"name": "Typo", "enter_long": RSI_ENTRY, "exit_long": bad_exit, "action": "save"},
    )
    html = response.content.decode()

    assert response.status_code == 200
    assert not RuleSet.objects.filter(owner=alice).exists()
    exit_box = field_block(html, "exit_long")
    assert "has-error" in exit_box and expected_message in unescape(exit_box)
    assert "has-error" not in field_block(html, "enter_long")
    # What she typed is still there, in every box.
    assert textarea_value(html, "exit_long") == bad_exit
    assert textarea_value(html, "enter_long") == RSI_ENTRY


def test_a_taken_name_is_shown_at_the_name(alice):
    make_rule_set(alice, "Taken")
    response = client_for(alice).post(
        "/strategies/rules/new/", {"name": "Taken", "enter_long": RSI_ENTRY, "action": "save"}
    )
    assert "has-error" in field_block(response.content.decode(), "name")
    assert RuleSet.objects.filter(owner=alice).count() == 1


def test_check_and_show_json_does_not_save(alice):
    response = client_for(alice).post(
        "/strategies/rules/new/", {"name": "Preview", "enter_long": RSI_ENTRY, "action": "preview"}
    )
    html = response.content.decode()
    shown = html.split('id="rules-json"')[1].split("<code>")[1].split("</code>")[0]
    assert json.loads(unescape(shown)) == services.rules_normalise(conditions={"enter_long": RSI_ENTRY})
    assert not RuleSet.objects.exists()


def test_editing_updates_the_rules(alice):
    rule_set = make_rule_set(alice)
    response = client_for(alice).post(
        f"/strategies/rules/{rule_set.pk}/edit/",
        {"name": "RSI dip v2", "enter_long": "rsi(7) < 25", "exit_long": RSI_EXIT, "action": "save"},
    )
    assert response.status_code == 302
    rule_set.refresh_from_db()
    assert rule_set.name == "RSI dip v2"
    assert (
        rule_set.rules["enter_long"] == services.rules_normalise(conditions={"enter_long": "rsi(7) < 25"})["enter_long"]
    )


def test_rule_list_shows_my_conditions(alice):
    rule_set = make_rule_set(alice)
    html = unescape(client_for(alice).get("/strategies/rules/").content.decode())
    text = services.rules_as_text(rules=rule_set.rules)
    assert f'data-rule-set-id="{rule_set.pk}"' in html
    assert text["enter_long"] in html and text["exit_long"] in html


def test_deleting_asks_first_then_deletes(alice):
    rule_set = make_rule_set(alice)
    client = client_for(alice)
    assert "Delete" in client.get(f"/strategies/rules/{rule_set.pk}/delete/").content.decode()
    assert RuleSet.objects.filter(pk=rule_set.pk).exists()
    response = client.post(f"/strategies/rules/{rule_set.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/strategies/rules/"
    assert not RuleSet.objects.filter(pk=rule_set.pk).exists()


def test_another_users_rule_set_is_404_and_unchanged(alice, mallory):
    rule_set = make_rule_set(alice)
    client = client_for(mallory)
    assert client.get(f"/strategies/rules/{rule_set.pk}/edit/").status_code == 404
    assert (
        client.post(
            f"/strategies/rules/{rule_set.pk}/edit/", {"name": "pwned", "enter_long": "close > 1", "action": "save"}
        ).status_code
        == 404
    )
    assert client.post(f"/strategies/rules/{rule_set.pk}/delete/").status_code == 404
    assert f'data-rule-set-id="{rule_set.pk}"' not in client.get("/strategies/rules/").content.decode()
    rule_set.refresh_from_db()
    assert rule_set.name == "RSI dip"
