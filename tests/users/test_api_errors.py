"""The API's edges: one JSON error shape, never an HTML page."""

from rest_framework.test import APIClient


def test_api_unknown_route_is_json_404(api_client, db):
    response = api_client.get("/api/v1/definitely-not-here/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]


def test_api_unknown_route_is_json_404_for_signed_in_user(alice):
    client = APIClient()
    client.force_login(alice)

    response = client.post("/api/v1/nothing/here/", {"x": 1})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_api_me_unauthenticated_is_401_json(api_client, db):
    response = api_client.get("/api/v1/me/")

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "not_authenticated"
    assert error["message"]


def test_api_tokens_unauthenticated_is_401_json(api_client, db):
    assert api_client.get("/api/v1/tokens/").status_code == 401
    assert api_client.post("/api/v1/tokens/", {"name": "x"}).status_code == 401


def test_api_me_with_session_without_2fa(alice):
    client = APIClient()
    client.force_login(alice)

    response = client.get("/api/v1/me/")

    assert response.status_code == 200
    assert response.json() == {
        "id": alice.pk,
        "email": alice.email,
        "display_name": alice.display_name,
        "date_joined": response.json()["date_joined"],
        "is_staff": False,
        "has_2fa": False,
    }
