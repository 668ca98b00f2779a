"""Portal pages of deployments: the list, the form (errors at the field, values kept), the
deployment page and its buttons; another user's deployment is a 404."""

from typing import Any

import pytest
from django.test import Client

from apps.strategies.models import Deployment
from apps.strategies.services import deployments as services
from tests.strategies.deploy_support import deployment_kwargs, market, paper_account

__all__ = ["market", "paper_account"]

NEW = "/strategies/deployments/new/"


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(market: Any, account: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "strategy": "sma_cross",
        "param_fast": "5",
        "param_slow": "20",
        "account": str(account.pk),
        "instruments": [str(market.pk)],
        "timeframe": "1m",
        "capital": "5000",
        "fill": "next_open",
        "entry": "market",
        "limit_offset": "0",
        "allow_short": "on",
        "fee": "0.1",
        "slippage_bps": "0",
        "sizing_mode": "fixed_fraction",
        "fraction": "50",
        "amount": "1000",
        "risk_per_trade": "1",
        "kelly_cap": "25",
        "stop_loss": "2",
        "take_profit": "",
        "max_drawdown": "20",
    }
    data.update(overrides)
    return data


@pytest.fixture
def deployment(market: Any, paper_account: Any) -> Deployment:
    return services.deployment_create(**deployment_kwargs(market, paper_account, name="Even minutes"))


def test_the_form_creates_a_draft_and_shows_it(alice: Any, market: Any, paper_account: Any) -> None:
    client = signed_in(alice)
    page = client.get(NEW)
    assert page.status_code == 200 and b'id="run-form"' in page.content
    response = client.post(NEW, form_data(market, paper_account))
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Deployment.objects.get()
    assert created.params == {"fast": 5, "slow": 20, "short": False}
    assert created.settings["exits"]["stop_loss"] == 0.02 and created.settings["sizing"]["fraction"] == 0.5
    assert created.risk == {"max_drawdown": 0.2}
    detail = client.get(response["Location"])
    assert detail.status_code == 200
    assert b'id="start-deployment"' in detail.content and b"deployment-config" in detail.content


def test_a_service_error_is_shown_at_its_field_and_values_are_kept(alice: Any, market: Any, paper_account: Any) -> None:
    response = signed_in(alice).post(NEW, form_data(market, paper_account, param_fast="30", stop_loss="150"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-field="param_fast"' in html and "has-error" in html
    assert 'value="30"' in html and 'value="5000"' in html
    assert not Deployment.objects.exists()


def test_the_buttons_start_pause_resume_and_stop(alice: Any, deployment: Deployment) -> None:
    client = signed_in(alice)
    base = f"/strategies/deployments/{deployment.pk}/"
    client.post(f"{base}start/", {"mode": "paper"})
    assert Deployment.objects.get(pk=deployment.pk).status == "paper"
    page = client.get(base).content
    assert b'id="pause-deployment"' in page and b'id="start-deployment"' not in page
    client.post(f"{base}pause/")
    assert Deployment.objects.get(pk=deployment.pk).status == "paused"
    client.post(f"{base}resume/")
    assert Deployment.objects.get(pk=deployment.pk).status == "paper"
    client.post(f"{base}stop/", {"close_positions": "1"})
    assert Deployment.objects.get(pk=deployment.pk).status == "stopped"


def test_a_refused_action_is_a_message_not_an_error_page(alice: Any, deployment: Deployment) -> None:
    client = signed_in(alice)
    response = client.post(f"/strategies/deployments/{deployment.pk}/pause/", follow=True)
    assert response.status_code == 200
    assert b"cannot pause" in response.content


def test_the_list_shows_only_mine(alice: Any, bob: Any, deployment: Deployment) -> None:
    assert b"Even minutes" in signed_in(alice).get("/strategies/deployments/").content
    assert b"Even minutes" not in signed_in(bob).get("/strategies/deployments/").content


@pytest.mark.parametrize("path", ["", "edit/"])
def test_an_outsider_gets_a_404(mallory: Any, deployment: Deployment, path: str) -> None:
    assert signed_in(mallory).get(f"/strategies/deployments/{deployment.pk}/{path}").status_code == 404


@pytest.mark.parametrize("action", ["start", "pause", "stop", "delete"])
def test_an_outsider_cannot_press_the_buttons(mallory: Any, deployment: Deployment, action: str) -> None:
    assert signed_in(mallory).post(f"/strategies/deployments/{deployment.pk}/{action}/").status_code == 404
    assert Deployment.objects.get(pk=deployment.pk).status == "draft"


def test_the_edit_form_saves_a_draft(alice: Any, market: Any, paper_account: Any, deployment: Deployment) -> None:
    client = signed_in(alice)
    assert client.get(f"/strategies/deployments/{deployment.pk}/edit/").status_code == 200
    response = client.post(
        f"/strategies/deployments/{deployment.pk}/edit/",
        form_data(market, paper_account, capital="777", name="Renamed"),
    )
    assert response.status_code == 302, response.content.decode()[:1500]
    saved = Deployment.objects.get(pk=deployment.pk)
    assert saved.name == "Renamed" and saved.capital == 777


def test_the_admin_lists_deployments_and_pauses_and_halts_them(
    staff: Any, enable_2fa: Any, deployment: Deployment
) -> None:
    from tests.users.steps import verified_client

    client = verified_client(staff, enable_2fa(staff))
    services.deployment_start(deployment=deployment, mode="paper")
    listing = client.get("/admin/strategies/deployment/?q=alice@example.com")
    assert listing.status_code == 200 and b"Even minutes" in listing.content
    url = "/admin/strategies/deployment/"
    client.post(url, {"action": "pause", "_selected_action": [deployment.pk]})
    assert Deployment.objects.get(pk=deployment.pk).status == "paused"
    client.post(url, {"action": "halt", "_selected_action": [deployment.pk]})
    halted = Deployment.objects.get(pk=deployment.pk)
    assert halted.status == "halted" and "operator" in halted.status_reason
    assert client.get(f"/admin/strategies/deployment/{deployment.pk}/change/").status_code == 200
    assert client.get("/admin/strategies/tickrun/").status_code == 200
    assert client.get("/admin/strategies/signal/").status_code == 200
