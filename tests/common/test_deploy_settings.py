"""Production settings (tradingplatform.settings.prod), each case in a child process.

The suite runs under tradingplatform.settings.test; loading the production settings here would
replace them for every later test, so a fresh interpreter loads them instead. The child gets a
minimal environment (no DATABASE_URL, DEBUG, ... inherited from the shell) and ignores the
checkout's .env, so a developer's local .env cannot make these tests pass or fail.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
PROD = "tradingplatform.settings.prod"

# argv[1] == "dump": print the named settings as JSON; otherwise run a manage.py command.
DRIVER = """
import json
import sys

import environ

environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)

import django
from django.core.management import execute_from_command_line

if sys.argv[1] == "dump":
    django.setup()
    from django.conf import settings

    print(json.dumps({name: getattr(settings, name) for name in sys.argv[2:]}, default=str))
else:
    execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def prod_environment(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": PROD,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "platform.example.com",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_prod(tmp_path: Path, *args: str, **overrides: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DRIVER, *args],
        cwd=REPO,
        env=prod_environment(tmp_path, **overrides),
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture(scope="module")
def prod_settings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    names = [
        "DEBUG",
        "EMBEDDED",
        "ALLOWED_HOSTS",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_PROXY_SSL_HEADER",
    ]
    result = run_prod(tmp_path_factory.mktemp("prod"), "dump", *names)
    assert result.returncode == 0, result.stderr
    values: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return values


def test_prod_check_deploy_passes_at_warning_level(tmp_path):
    result = run_prod(tmp_path, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_prod_settings_are_hardened(prod_settings):
    assert prod_settings["DEBUG"] is False
    assert prod_settings["EMBEDDED"] is False
    assert prod_settings["SECURE_HSTS_SECONDS"] >= 31536000
    assert prod_settings["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert prod_settings["SESSION_COOKIE_SECURE"] is True
    assert prod_settings["CSRF_COOKIE_SECURE"] is True
    # Behind a TLS-terminating proxy the redirect only works when Django trusts its header.
    assert prod_settings["SECURE_SSL_REDIRECT"] is True
    assert prod_settings["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert prod_settings["ALLOWED_HOSTS"] == ["platform.example.com"]
    assert "*" not in prod_settings["ALLOWED_HOSTS"]


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "REDIS_URL", "FIELD_ENCRYPTION_KEYS"])
def test_prod_refuses_to_start_without_required_variable(tmp_path, missing):
    result = run_prod(tmp_path, "check", **{missing: None})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


def test_prod_refuses_empty_secret_key(tmp_path):
    # An .env copied from .env.example and not filled in gives SECRET_KEY="".
    result = run_prod(tmp_path, "check", SECRET_KEY="")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_prod_refuses_wildcard_allowed_hosts(tmp_path):
    result = run_prod(tmp_path, "check", ALLOWED_HOSTS="platform.example.com,*")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "ALLOWED_HOSTS" in result.stderr
