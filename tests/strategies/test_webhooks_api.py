"""The owner's webhook API and the deployment page's webhook section: the secret only in the
answer that made it, the attempts listed; mallory gets a 404 everywhere and changes nothing."""

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.common.errors import NotFound
from apps.strategies.models import DeploymentWebhook, WebhookSignal
from apps.strategies.webhooks import selectors
from tests.strategies.deploy_support import market, paper_account
from tests.strategies.test_webhooks import Hook, alert, hook, make_hook, post

__all__ = ["hook", "market", "paper_account"]


def api(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def base(hook: Hook) -> str:
    return f"/api/v1/deployments/{hook.deployment.pk}/webhook/"


def test_enable_answers_the_url_and_the_secret_once(market: Any, paper_account: Any, alice: Any) -> None:
    draft = make_hook(market, paper_account, start=False)
    DeploymentWebhook.objects.filter(pk=draft.webhook.pk).delete()
    url = base(draft)
    assert api(alice).get(url).json() == {
        "deployment": draft.deployment.pk,
        "is_configured": False,
        "is_enabled": False,
        "url": None,
        "rate_limit_per_minute": None,
        "secret_rotated_at": None,
        "last_signal_at": None,
    }
    first = api(alice).post(url + "enable/", {"rate_limit_per_minute": 12}, format="json")
    assert first.status_code == 201
    body = first.json()
    assert body["secret"].startswith("tvwh_") and body["url"].startswith("http://testserver/hooks/tradingview/")
    assert body["is_enabled"] and body["rate_limit_per_minute"] == 12
    shown = api(alice).get(url).json()
    assert "secret" not in shown and shown["url"] == body["url"]
    again = api(alice).post(url + "enable/", {}, format="json")
    assert again.status_code == 200 and again.json()["secret"] is None


def test_rotate_gives_a_new_secret_and_disable_turns_it_off(hook: Hook, alice: Any) -> None:
    rotated = api(alice).post(base(hook) + "rotate/")
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (None, hook.secret)
    assert post(hook.url, alert(hook)).status_code == 401
    disabled = api(alice).post(base(hook) + "disable/")
    assert disabled.status_code == 200 and disabled.json()["is_enabled"] is False
    assert "secret" not in disabled.json()


def test_bad_input_is_a_400_naming_the_field(hook: Hook, alice: Any) -> None:
    response = api(alice).post(base(hook) + "enable/", {"rate_limit_per_minute": 0}, format="json")
    assert response.status_code == 400
    assert "rate_limit_per_minute" in response.json()["error"]["fields"]
    unknown = api(alice).post(base(hook) + "enable/", {"secret": "mine"}, format="json")
    assert unknown.status_code == 400
    assert DeploymentWebhook.objects.get(pk=hook.webhook.pk).rate_limit_per_minute == 30


def test_rotate_or_disable_before_enabling_is_a_404(market: Any, paper_account: Any, alice: Any) -> None:
    draft = make_hook(market, paper_account, start=False)
    DeploymentWebhook.objects.filter(pk=draft.webhook.pk).delete()
    for action in ("rotate/", "disable/"):
        response = api(alice).post(base(draft) + action)
        assert response.status_code == 404 and response.json()["error"]["code"] == "webhook_not_enabled"


def test_the_attempts_are_listed_newest_first_without_the_secret(hook: Hook, alice: Any) -> None:
    post(hook.url, alert(hook))
    post(hook.url, alert(None, secret="wrong"))
    response = api(alice).get(base(hook) + "signals/")
    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["status"], r["code"], r["http_status"]) for r in rows] == [
        ("refused", "bad_secret", 401),
        ("accepted", "ok", 200),
    ]
    assert rows[1]["order"] is not None and rows[1]["order_ids"] == [rows[1]["order"]]
    assert hook.secret not in response.content.decode()


def test_mallory_gets_404_everywhere_and_changes_nothing(hook: Hook, mallory: Any) -> None:
    post(hook.url, alert(hook))
    client = api(mallory)
    assert client.get(base(hook)).status_code == 404
    assert client.get(base(hook) + "signals/").status_code == 404
    for action in ("enable/", "disable/", "rotate/"):
        response = client.post(base(hook) + action, {}, format="json")
        assert response.status_code == 404
        assert "secret" not in response.content.decode()
    webhook = DeploymentWebhook.objects.get(pk=hook.webhook.pk)
    assert webhook.is_enabled and webhook.secret_encrypted == hook.webhook.secret_encrypted
    with pytest.raises(NotFound):
        selectors.webhook_signal_list_for_user(user=mallory, deployment_id=hook.deployment.pk)
    with pytest.raises(NotFound):
        selectors.webhook_get_for_user(user=mallory, deployment_id=hook.deployment.pk)
    # the page's buttons too
    web = Client()
    web.force_login(mallory)
    for action in ("enable", "disable", "rotate"):
        url = f"/strategies/deployments/{hook.deployment.pk}/webhook/{action}/"
        assert web.post(url).status_code == 404
    assert DeploymentWebhook.objects.get(pk=hook.webhook.pk).secret_encrypted == hook.webhook.secret_encrypted
    assert WebhookSignal.objects.count() == 1


def test_anonymous_callers_are_refused(hook: Hook) -> None:
    assert APIClient().get(base(hook)).status_code in (401, 403)
    assert Client().post(f"/strategies/deployments/{hook.deployment.pk}/webhook/rotate/").status_code == 302


# --- the page ---------------------------------------------------------------------------------


def test_the_page_enables_and_shows_the_secret_once_then_lists_attempts(
    market: Any, paper_account: Any, alice: Any
) -> None:
    draft = make_hook(market, paper_account, start=False)
    DeploymentWebhook.objects.filter(pk=draft.webhook.pk).delete()
    web = Client()
    web.force_login(alice)
    page = f"/strategies/deployments/{draft.deployment.pk}/"
    assert 'id="webhook-enable"' in web.get(page).content.decode()
    shown = web.post(f"/strategies/deployments/{draft.deployment.pk}/webhook/enable/")
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    html = shown.content.decode()
    webhook = DeploymentWebhook.objects.get(deployment=draft.deployment)
    assert f"/hooks/tradingview/{webhook.token}/" in html and 'id="webhook-secret"' in html
    secret = html.split('id="webhook-secret">')[1].split("<")[0]
    assert secret.startswith("tvwh_") and "{{timenow}}" in html
    # the deployment page shows the URL, never the secret
    detail = web.get(page).content.decode()
    assert webhook.token in detail and secret not in detail
    post(f"/hooks/tradingview/{webhook.token}/", alert(None, secret=secret))
    detail = web.get(page).content.decode()
    assert 'data-webhook-signal="' in detail and "not_running" in detail
    # rotate shows a new one; disable goes back to the page
    rotated = web.post(f"/strategies/deployments/{draft.deployment.pk}/webhook/rotate/").content.decode()
    assert 'id="webhook-secret"' in rotated and secret not in rotated
    assert web.post(f"/strategies/deployments/{draft.deployment.pk}/webhook/disable/").status_code == 302
    assert not DeploymentWebhook.objects.get(pk=webhook.pk).is_enabled
    assert web.post(f"/strategies/deployments/{draft.deployment.pk}/webhook/nope/").status_code == 404


def test_the_admin_shows_attempts_read_only_and_never_the_secret(hook: Hook, staff: Any, enable_2fa: Any) -> None:
    from tests.users.steps import verified_client

    post(hook.url, alert(hook))
    post(hook.url, alert(None, secret="wrong"))
    client = verified_client(staff, enable_2fa(staff))
    listing = client.get("/admin/strategies/webhooksignal/", {"q": str(hook.deployment.pk)})
    assert listing.status_code == 200 and "bad_secret" in listing.content.decode()
    attempt = WebhookSignal.objects.filter(code="bad_secret").get()
    detail = client.get(f"/admin/strategies/webhooksignal/{attempt.pk}/change/")
    assert detail.status_code == 200 and 'name="code"' not in detail.content.decode()
    assert client.get("/admin/strategies/webhooksignal/add/").status_code == 403
    assert client.post(f"/admin/strategies/webhooksignal/{attempt.pk}/delete/", {"post": "yes"}).status_code == 403
    webhook_page = client.get(f"/admin/strategies/deploymentwebhook/{hook.webhook.pk}/change/").content.decode()
    assert hook.secret not in webhook_page and hook.webhook.secret_encrypted not in webhook_page
    assert WebhookSignal.objects.count() == 2
