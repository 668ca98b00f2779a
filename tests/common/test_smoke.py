def test_login_page_renders(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b"Sign In" in response.content or b"Sign in" in response.content


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/v1/definitely-not-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
