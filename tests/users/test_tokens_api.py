"""Personal API tokens over the REST API: a fresh second factor to create, shown once, stored
as a digest, owner-scoped."""

from datetime import timedelta

import pytest
from django.utils import timezone
from knox.models import get_token_model
from rest_framework.test import APIClient

from apps.users.models import ApiToken
from tests.users.steps import FRESH_SECONDS, session_mark_verified

TOKENS_URL = "/api/v1/tokens/"
ME_URL = "/api/v1/me/"


def _detail_url(token: ApiToken) -> str:
    return f"{TOKENS_URL}{token.public_id}/"


def _session_client(user, device=None, *, seconds_ago: float = 0) -> APIClient:
    client = APIClient()
    client.force_login(user)
    if device is not None:
        session_mark_verified(client, device, seconds_ago=seconds_ago)
    return client


def _token_client(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return client


@pytest.fixture
def alice_device(alice, enable_2fa):
    return enable_2fa(alice)


@pytest.fixture
def fresh_alice(alice, alice_device) -> APIClient:
    return _session_client(alice, alice_device)


@pytest.fixture
def alice_token(alice) -> tuple[ApiToken, str]:
    return get_token_model().objects.create(user=alice, name="alice bot")


@pytest.fixture
def mallory_token(mallory) -> tuple[ApiToken, str]:
    return get_token_model().objects.create(user=mallory, name="mallory bot")


# --- creating ----------------------------------------------------------------------------------


def test_token_create_with_stale_second_factor_is_403_reauth_required(alice, alice_device):
    # given: verified 16 minutes ago
    client = _session_client(alice, alice_device, seconds_ago=FRESH_SECONDS + 60)

    # when
    response = client.post(TOKENS_URL, {"name": "bot"})

    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauth_required"
    assert not ApiToken.objects.filter(user=alice).exists()


def test_token_create_without_2fa_is_403_reauth_required(alice):
    client = _session_client(alice)

    response = client.post(TOKENS_URL, {"name": "bot"})

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "reauth_required"
    assert "Turn on two-factor authentication" in error["message"]
    assert not ApiToken.objects.filter(user=alice).exists()


def test_token_create_with_fresh_factor_returns_plaintext_once(fresh_alice, alice):
    # when
    response = fresh_alice.post(TOKENS_URL, {"name": "bot", "ttl_days": 30})

    # then
    assert response.status_code == 201
    body = response.json()
    plaintext = body["token"]
    assert plaintext.startswith("tp_")
    assert body["name"] == "bot"
    assert plaintext.startswith(body["prefix"])
    token = ApiToken.objects.get(user=alice)
    assert str(token.public_id) == body["id"]
    assert timedelta(days=29) < token.expiry - timezone.now() <= timedelta(days=30)

    listed = fresh_alice.get(TOKENS_URL)
    detail = fresh_alice.get(f"{TOKENS_URL}{body['id']}/")
    assert listed.status_code == detail.status_code == 200
    assert "token" not in detail.json()
    assert all("token" not in item for item in listed.json())
    assert plaintext not in listed.content.decode()
    assert plaintext not in detail.content.decode()


def test_token_create_stores_no_plaintext(fresh_alice, alice):
    plaintext = fresh_alice.post(TOKENS_URL, {"name": "bot"}).json()["token"]

    token = ApiToken.objects.get(user=alice)
    stored = [str(value) for value in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert plaintext not in stored
    assert all(plaintext not in value for value in stored)
    assert len(token.digest) == 128  # SHA-512 hex


def test_token_create_default_expiry_is_90_days(fresh_alice, alice):
    fresh_alice.post(TOKENS_URL, {"name": "bot"})

    token = ApiToken.objects.get(user=alice)
    assert timedelta(days=89) < token.expiry - timezone.now() <= timedelta(days=90)


@pytest.mark.parametrize(
    "payload",
    [{}, {"name": ""}, {"name": "x" * 81}, {"name": "bot", "ttl_days": 0}, {"name": "bot", "ttl_days": 366}],
)
def test_token_create_invalid_input_is_400_with_fields(fresh_alice, alice, payload):
    response = fresh_alice.post(TOKENS_URL, payload)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"]
    assert not ApiToken.objects.filter(user=alice).exists()


def test_token_create_ignores_mass_assigned_fields(fresh_alice, alice, mallory):
    # when
    response = fresh_alice.post(
        TOKENS_URL,
        {
            "name": "bot",
            "user": mallory.pk,
            "owner_id": mallory.pk,
            "user_id": mallory.pk,
            "is_staff": True,
            "digest": "0" * 128,
            "token_key": "tp_chosen",
            "expiry": "2999-01-01T00:00:00Z",
            "id": "00000000-0000-0000-0000-000000000000",
        },
    )

    # then
    assert response.status_code == 201
    token = ApiToken.objects.get()
    assert token.user == alice
    assert token.digest != "0" * 128
    assert token.token_key != "tp_chosen"
    assert str(token.public_id) != "00000000-0000-0000-0000-000000000000"
    assert token.expiry < timezone.now() + timedelta(days=91)
    alice.refresh_from_db()
    mallory.refresh_from_db()
    assert not alice.is_staff
    assert not ApiToken.objects.filter(user=mallory).exists()


def test_token_create_with_token_auth_is_403(alice, alice_token):
    # given: a token, no session at all
    client = _token_client(alice_token[1])

    # when
    response = client.post(TOKENS_URL, {"name": "second"})

    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauth_required"
    assert ApiToken.objects.filter(user=alice).count() == 1


def test_token_create_with_session_needs_csrf(alice, alice_device):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    session_mark_verified(client, alice_device)

    response = client.post(TOKENS_URL, {"name": "bot"})

    assert response.status_code == 403
    assert not ApiToken.objects.filter(user=alice).exists()


# --- using -------------------------------------------------------------------------------------


def test_token_auth_works_on_me(alice, alice_token):
    response = _token_client(alice_token[1]).get(ME_URL)

    assert response.status_code == 200
    assert response.json()["email"] == alice.email
    alice_token[0].refresh_from_db()
    assert alice_token[0].last_used_at is not None


def test_token_created_over_api_works_on_me(fresh_alice, alice):
    plaintext = fresh_alice.post(TOKENS_URL, {"name": "bot"}).json()["token"]

    response = _token_client(plaintext).get(ME_URL)

    assert response.status_code == 200
    assert response.json()["id"] == alice.pk


def test_token_expired_is_401_with_json_error(alice, alice_token):
    # given
    token, plaintext = alice_token
    ApiToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))

    # when
    response = _token_client(plaintext).get(ME_URL)

    # then
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert error["message"]


def test_token_wrong_is_401(db):
    response = _token_client("tp_" + "a" * 64).get(ME_URL)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_token_revoked_is_401(fresh_alice, alice, alice_token):
    # given
    token, plaintext = alice_token
    assert fresh_alice.delete(_detail_url(token)).status_code == 204

    # when
    response = _token_client(plaintext).get(ME_URL)

    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert not ApiToken.objects.filter(pk=token.pk).exists()


def test_token_of_locked_user_is_401(alice, alice_token, staff):
    from apps.users.services import user_lock

    user_lock(actor=staff, user=alice, reason="test")

    response = _token_client(alice_token[1]).get(ME_URL)

    assert response.status_code == 401


def test_token_list_with_token_auth(alice, alice_token):
    response = _token_client(alice_token[1]).get(TOKENS_URL)

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [str(alice_token[0].public_id)]


def test_token_revoke_with_token_auth_revokes_itself(alice, alice_token):
    client = _token_client(alice_token[1])

    assert client.delete(_detail_url(alice_token[0])).status_code == 204

    assert client.get(ME_URL).status_code == 401


# --- outsider ----------------------------------------------------------------------------------


def test_token_detail_is_404_for_outsider(alice_token, mallory_token):
    client = _token_client(mallory_token[1])

    response = client.get(_detail_url(alice_token[0]))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_token_revoke_is_404_for_outsider(alice_token, mallory_token):
    client = _token_client(mallory_token[1])

    response = client.delete(_detail_url(alice_token[0]))

    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=alice_token[0].pk).exists()
    assert _token_client(alice_token[1]).get(ME_URL).status_code == 200


def test_token_revoke_is_404_for_outsider_with_session(alice_token, mallory, enable_2fa):
    client = _session_client(mallory, enable_2fa(mallory))

    response = client.delete(_detail_url(alice_token[0]))

    assert response.status_code == 404
    assert ApiToken.objects.filter(pk=alice_token[0].pk).exists()


def test_token_list_is_scoped_to_owner(alice_token, mallory_token):
    alice_list = _token_client(alice_token[1]).get(TOKENS_URL).json()
    mallory_list = _token_client(mallory_token[1]).get(TOKENS_URL).json()

    assert [item["id"] for item in alice_list] == [str(alice_token[0].public_id)]
    assert [item["id"] for item in mallory_list] == [str(mallory_token[0].public_id)]


def test_token_detail_unknown_id_is_404(alice_token):
    client = _token_client(alice_token[1])

    assert client.get(f"{TOKENS_URL}00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get(f"{TOKENS_URL}not-a-uuid/").status_code == 404


def test_token_list_query_count_does_not_grow(alice, django_assert_max_num_queries):
    for i in range(5):
        get_token_model().objects.create(user=alice, name=f"bot {i}")
    _, plaintext = get_token_model().objects.create(user=alice, name="caller")
    client = _token_client(plaintext)

    with django_assert_max_num_queries(6):
        response = client.get(TOKENS_URL)

    assert len(response.json()) == 6


def test_token_create_with_victims_token_and_attackers_fresh_session_is_403(alice, mallory, enable_2fa):
    # given: mallory holds a leaked token of alice and her own freshly verified session
    _, alice_token = ApiToken.objects.create(user=alice, expiry=timedelta(days=1), name="leaked")
    client = _session_client(mallory, enable_2fa(mallory))
    client.credentials(HTTP_AUTHORIZATION=f"Token {alice_token}")
    # when: she asks for a long-lived token for alice
    response = client.post(TOKENS_URL, {"name": "persist", "ttl_days": 365}, format="json")
    # then: mallory's second factor is not alice's
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "reauth_required"
    assert ApiToken.objects.filter(user=alice).count() == 1


def test_token_create_with_session_verified_by_a_removed_device_is_403(alice, enable_2fa):
    old_device = enable_2fa(alice)
    client = _session_client(alice, old_device)
    # 2FA is turned off elsewhere and a new authenticator enrolled: the old verification is void.
    old_device.delete()
    enable_2fa(alice)

    response = client.post(TOKENS_URL, {"name": "bot"}, format="json")

    assert response.status_code == 403
    assert not ApiToken.objects.filter(user=alice).exists()
