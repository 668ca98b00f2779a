"""Security headers on every response, CORS closed, API throttling (issue 8, Operations; RELIABILITY 29).

All on by default: the test settings add nothing. The production-only parts (HSTS, secure
cookies, the HTTPS redirect) are checked on a real request served under
tradingplatform.settings.prod in a child process (see tests/common/test_deploy_settings.py).
"""

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.common.security_headers import content_security_policy, inline_hashes
from tests.common.test_deploy_settings import REPO, prod_environment

FOREIGN = "https://evil.example"


def _directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split("; ")}


@pytest.mark.parametrize("path", ["/accounts/login/", "/api/v1/tokens/", "/no-such-page/", "/healthz"])
def test_every_response_carries_the_security_headers(db, path):
    response = Client().get(path)

    csp = _directives(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"]
    assert "'unsafe-inline'" not in csp["style-src"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "geolocation=()" in response["Permissions-Policy"]


def test_the_policy_allows_no_host_but_the_site_outside_the_api_docs():
    for page in ("/", "/backtests/1/", "/admin/"):
        assert "http" not in content_security_policy(page)

    docs = _directives(content_security_policy("/api/docs/"))

    assert docs["script-src"][-1] == "https://cdn.jsdelivr.net"  # Swagger UI's bundle
    assert "'unsafe-inline'" not in docs["script-src"]


def test_the_inline_code_of_the_templates_is_allowed_by_hash_only():
    scripts, styles = inline_hashes()

    # the account page's confirm() handler and the marketplace / report <style> blocks
    assert scripts and styles
    assert all(re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='", digest) for digest in scripts + styles)
    policy = _directives(content_security_policy("/"))
    assert set(scripts) <= set(policy["script-src"])
    assert set(styles) <= set(policy["style-src"])
    assert "'unsafe-hashes'" in policy["script-src"]  # hashes of event handlers need it


def test_a_view_keeps_a_policy_it_sets_itself(db, staff):
    # drf-spectacular's Swagger page asks for COOP unsafe-none (its OAuth pop-ups)
    client = Client()
    client.force_login(staff)

    response = client.get("/api/docs/")

    assert response["Cross-Origin-Opener-Policy"] in {"unsafe-none", "same-origin"}
    assert "https://cdn.jsdelivr.net" in response["Content-Security-Policy"]


# --- CORS: closed by default --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/tokens/", "/api/schema/", "/accounts/login/", "/healthz"])
def test_a_cross_origin_request_gets_no_cors_grant(db, alice, path):
    client = APIClient()
    client.force_authenticate(alice)

    response = client.get(path, HTTP_ORIGIN=FOREIGN)

    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_a_preflight_gets_no_allow_headers(db):
    response = Client().options(
        "/api/v1/tokens/",
        HTTP_ORIGIN=FOREIGN,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )

    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


# --- API throttling -----------------------------------------------------------------------------


@pytest.fixture
def low_rates(settings):
    rates = {"anon": "3/min", "user": "5/min"}
    framework = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    settings.REST_FRAMEWORK = framework
    # DRF's throttles read their rates at import into a class attribute
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    yield rates
    SimpleRateThrottle.THROTTLE_RATES = original
    cache.clear()


class _OpenView(APIView):
    """An endpoint anyone may call (as a TradingView webhook is): only the default throttles."""

    permission_classes = [AllowAny]

    def get(self, request: Any) -> Response:
        return Response({"ok": True})


urlpatterns = [path("open/", _OpenView.as_view())]


@override_settings(ROOT_URLCONF=__name__)
def test_an_anonymous_burst_beyond_the_rate_gets_429_with_retry_after(db, low_rates):
    # DRF checks permissions before throttles: on the platform's authenticated endpoints an
    # anonymous caller is answered 401 first; the anonymous rate guards the open endpoints.
    client = APIClient()

    codes = [client.get("/open/").status_code for _ in range(3)]
    response = client.get("/open/")

    assert codes == [200, 200, 200]
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    other = APIClient(REMOTE_ADDR="10.1.2.3")  # the rate is per client address
    assert other.get("/open/").status_code == 200


def test_a_users_burst_beyond_the_rate_gets_429_and_others_are_not_slowed(db, alice, bob, low_rates):
    alice_client, bob_client = APIClient(), APIClient()
    alice_client.force_authenticate(alice)
    bob_client.force_authenticate(bob)

    codes = [alice_client.get("/api/v1/tokens/").status_code for _ in range(5)]
    refused = alice_client.get("/api/v1/tokens/")

    assert codes == [200] * 5
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert bob_client.get("/api/v1/tokens/").status_code == 200


# --- Production settings: HSTS, secure cookies, the headers -------------------------------------

PROD_REQUEST = """
import django
django.setup()
from django.test import Client
response = Client().get("/accounts/login/", secure=True, HTTP_HOST="platform.example.com")
plain = Client().get("/accounts/login/", HTTP_HOST="platform.example.com")
csrf = response.cookies["__Host-csrftoken"]
print(json.dumps({
    "status": response.status_code,
    "headers": dict(response.headers),
    "csrf_secure": bool(csrf["secure"]),
    "plain_status": plain.status_code,
    "plain_location": plain.get("Location", ""),
}))
"""


def test_production_serves_hsts_secure_cookies_and_the_headers(tmp_path):
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, environ\nenviron.Env.read_env = classmethod(lambda cls, *a, **k: None)\n" + PROD_REQUEST,
        ],
        cwd=REPO,
        env=prod_environment(tmp_path, REDIS_URL="redis://127.0.0.1:6379/15"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert child.returncode == 0, child.stderr
    found = json.loads(child.stdout.strip().splitlines()[-1])
    headers = found["headers"]
    assert found["status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert found["csrf_secure"] is True
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert not [name for name in headers if name.lower().startswith("access-control-")]
    # plain HTTP is sent to HTTPS
    assert found["plain_status"] == 301
    assert found["plain_location"].startswith("https://platform.example.com/")
