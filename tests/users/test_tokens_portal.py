"""The /tokens/ portal page: create (token shown once), list, revoke."""

import pytest
from django.test import Client
from knox.models import get_token_model

from apps.users.models import ApiToken
from tests.users.steps import FRESH_SECONDS, session_mark_verified, verified_client

TOKENS_PAGE = "/tokens/"


@pytest.fixture
def alice_device(alice, enable_2fa):
    return enable_2fa(alice)


def test_tokens_page_create_shows_token_once(alice, alice_device):
    # given
    client = verified_client(alice, alice_device)

    # when
    response = client.post(TOKENS_PAGE, {"name": "my bot", "ttl_days": 30})

    # then
    assert response.status_code == 200
    plaintext = response.context["created"].plaintext
    assert plaintext.startswith("tp_")
    assert f'<code class="secret" id="new-token-value">{plaintext}</code>'.encode() in response.content
    token = ApiToken.objects.get(user=alice)
    assert token.name == "my bot"
    again = client.get(TOKENS_PAGE)
    assert again.status_code == 200
    assert b"my bot" in again.content
    assert plaintext.encode() not in again.content
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {plaintext}").status_code == 200


def test_tokens_page_without_2fa_asks_to_turn_it_on(client, alice):
    client.force_login(alice)

    page = client.get(TOKENS_PAGE)
    post = client.post(TOKENS_PAGE, {"name": "my bot", "ttl_days": 30})

    assert page.status_code == 200
    assert b"API tokens need two-factor authentication" in page.content
    assert post.status_code == 403
    assert not ApiToken.objects.filter(user=alice).exists()


def test_tokens_page_with_stale_factor_is_403_and_asks_for_a_code(alice, alice_device):
    client = Client()
    client.force_login(alice)
    session_mark_verified(client, alice_device, seconds_ago=FRESH_SECONDS + 60)

    response = client.post(TOKENS_PAGE, {"name": "my bot", "ttl_days": 30})

    assert response.status_code == 403
    assert b"verified in the last 15 minutes" in response.content
    assert response.context["created"] is None
    assert not ApiToken.objects.filter(user=alice).exists()


def test_tokens_page_invalid_form_is_400(alice, alice_device):
    client = verified_client(alice, alice_device)

    response = client.post(TOKENS_PAGE, {"name": "", "ttl_days": 0})

    assert response.status_code == 400
    assert not ApiToken.objects.filter(user=alice).exists()


def test_tokens_page_lists_only_own_tokens(alice, alice_device, mallory):
    get_token_model().objects.create(user=alice, name="alice bot")
    get_token_model().objects.create(user=mallory, name="mallory bot")
    client = verified_client(alice, alice_device)

    response = client.get(TOKENS_PAGE)

    assert b"alice bot" in response.content
    assert b"mallory bot" not in response.content


def test_tokens_page_revoke_own_token(alice, alice_device):
    token, plaintext = get_token_model().objects.create(user=alice, name="alice bot")
    client = verified_client(alice, alice_device)

    response = client.post(f"/tokens/{token.public_id}/revoke/")

    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert Client().get("/api/v1/me/", HTTP_AUTHORIZATION=f"Token {plaintext}").status_code == 401


def test_tokens_page_revoke_is_refused_for_outsider(alice, mallory):
    token, _ = get_token_model().objects.create(user=alice, name="alice bot")
    client = Client()
    client.force_login(mallory)

    response = client.post(f"/tokens/{token.public_id}/revoke/", follow=True)

    assert b"No such token." in response.content
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_tokens_page_needs_login(client, db):
    response = client.get(TOKENS_PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
