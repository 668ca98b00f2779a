"""Credentials at rest: MultiFernet round trip, the development key derived from SECRET_KEY,
rotation helpers, and unreadable tokens."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from apps.accounts import crypto
from tests.accounts.accounts_support import CANARY_SECRET

CREDENTIALS = {"api_key": "k-123", "secret": CANARY_SECRET, "password": ""}


def test_round_trip_and_token_hides_the_secret(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = crypto.encrypt_credentials(CREDENTIALS)
    assert CANARY_SECRET not in token
    assert crypto.decrypt_credentials(token) == CREDENTIALS


def test_empty_keys_outside_production_derive_a_stable_key_from_secret_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    token = crypto.encrypt_credentials(CREDENTIALS)
    assert crypto.decrypt_credentials(token) == CREDENTIALS
    # the derived key is not SECRET_KEY itself and changes with it
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    with pytest.raises(crypto.CredentialsUnreadableError):
        crypto.decrypt_credentials(token)


def test_production_settings_refuse_to_derive_a_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    settings.SETTINGS_MODULE = "tradingplatform.settings.prod"
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt_credentials(CREDENTIALS)


def test_a_malformed_key_is_named_by_position_not_by_value(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "not-a-key-value"]
    with pytest.raises(ImproperlyConfigured) as error:
        crypto.encrypt_credentials(CREDENTIALS)
    assert "entry 2" in str(error.value)
    assert "not-a-key-value" not in str(error.value)


def test_tampered_token_is_unreadable(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    token = crypto.encrypt_credentials(CREDENTIALS)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    for bad in (tampered, "garbage", "", "ü"):
        with pytest.raises(crypto.CredentialsUnreadableError):
            crypto.decrypt_credentials(bad)


def test_newest_key_encrypts_older_keys_still_decrypt_and_reencrypt_moves_to_newest(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    token = crypto.encrypt_credentials(CREDENTIALS)
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt_credentials(token) == CREDENTIALS
    assert not crypto.is_current(token)
    rotated = crypto.reencrypt(token)
    assert crypto.is_current(rotated)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt_credentials(rotated) == CREDENTIALS
    with pytest.raises(crypto.CredentialsUnreadableError):
        crypto.decrypt_credentials(token)
    with pytest.raises(crypto.CredentialsUnreadableError):
        crypto.reencrypt(token)


def test_mask_keeps_only_the_last_four_characters():
    assert crypto.mask("abcdefghijklmnopa1b2") == "key …a1b2"
    assert crypto.mask("short") == "key …"
