"""Broker credentials at rest: one MultiFernet token per trading account.

Keys come from ``settings.FIELD_ENCRYPTION_KEYS``: a list of Fernet keys (``Fernet.generate_key()``),
newest first. The newest encrypts; every key in the list may decrypt. Rotation:

1. put a new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it) and restart;
2. run ``python manage.py rotate_secrets`` (re-encrypts every token under the newest key);
3. drop the old keys and restart.

When the list is empty outside production (development, tests, embedded ``make run``), one key
is derived from ``SECRET_KEY`` with HKDF-SHA256 (a fixed, purpose-bound salt and info), so a
development database keeps decrypting across restarts. Production settings refuse to start
without FIELD_ENCRYPTION_KEYS (tradingplatform/settings/prod.py), and this module refuses too
when it finds itself under production settings without keys: changing SECRET_KEY must never be
what locks every account out, and a leaked SECRET_KEY must not be enough to read the secrets.

Credentials are a ``dict[str, str]`` (``apiKey``, ``secret``, ``password``...) serialised as JSON
inside the token. Nothing here logs, and no error message carries a key or a plaintext.
"""

import base64
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_DERIVATION_SALT = b"tradingplatform.accounts.credentials"
_DERIVATION_INFO = b"fernet-key-v1"


class CredentialsUnreadableError(Exception):
    """A token none of the configured keys can open: tampered, truncated, or encrypted under a
    key that has since been removed. The account needs reconnecting (its owner enters the key
    again); the token itself is useless."""


def _derived_key(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_DERIVATION_SALT, info=_DERIVATION_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def _is_production() -> bool:
    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    return module.rsplit(".", 1)[-1] == "prod"


def configured_keys() -> list[bytes]:
    """The Fernet keys in use, newest first (the derived development key when none is set)."""
    raw = getattr(settings, "FIELD_ENCRYPTION_KEYS", None) or []
    if isinstance(raw, str):
        raw = [part for part in raw.split(",")]
    keys = [key.strip().encode() if isinstance(key, str) else bytes(key) for key in raw if str(key).strip()]
    if keys:
        return keys
    if _is_production():
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: production never derives a key from SECRET_KEY.")
    return [_derived_key(settings.SECRET_KEY)]


def _fernets() -> list[Fernet]:
    fernets = []
    for position, key in enumerate(configured_keys(), start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # Name the position, never the key.
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS entry {position} is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from None
    return fernets


def _multi() -> MultiFernet:
    return MultiFernet(_fernets())


def encrypt_credentials(data: Mapping[str, str]) -> str:
    """Encrypt ``data`` under the newest key; returns the token (ASCII)."""
    plaintext = json.dumps(dict(data), sort_keys=True, separators=(",", ":")).encode()
    return _multi().encrypt(plaintext).decode("ascii")


def decrypt_credentials(token: str) -> dict[str, str]:
    """The credentials inside ``token``. Raises CredentialsUnreadableError when no key opens it
    (or it does not hold a JSON object of strings)."""
    if not token:
        raise CredentialsUnreadableError("No credentials are stored.")
    try:
        plaintext = _multi().decrypt(token.encode("ascii"))
        data = json.loads(plaintext)
    except (InvalidToken, UnicodeError, ValueError):
        raise CredentialsUnreadableError(
            "The stored credentials cannot be decrypted with the configured keys."
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CredentialsUnreadableError("The stored credentials are not in the expected shape.")
    return data


def is_current(token: str) -> bool:
    """Is ``token`` already encrypted under the newest key? (rotate_secrets skips those.)"""
    try:
        _fernets()[0].decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError, ValueError):
        return False
    return True


def reencrypt(token: str) -> str:
    """``token`` re-encrypted under the newest key (MultiFernet.rotate). Raises
    CredentialsUnreadableError when no configured key opens it."""
    try:
        return _multi().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, ValueError):
        raise CredentialsUnreadableError(
            "The stored credentials cannot be decrypted with the configured keys."
        ) from None


def mask(value: str, *, label: str = "key", shown: int = 4) -> str:
    """The hint shown instead of a credential: ``"key …a1b2"`` (the last ``shown`` characters,
    none at all for values too short to hide the rest)."""
    value = (value or "").strip()
    if len(value) < shown * 3:
        return f"{label} …"
    return f"{label} …{value[-shown:]}"
