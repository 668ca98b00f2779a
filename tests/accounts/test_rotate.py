"""`manage.py rotate_secrets` (RELIABILITY 35): put the new key first, rotate, drop the old key,
and every account still decrypts; a second run rotates nothing; a tampered token marks only its
account needs_reconnect, the run carries on, and the command exits 1 after printing the counts."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from apps.accounts import crypto
from apps.accounts.broker_factory import broker_for
from apps.accounts.brokers.base import AuthenticationBrokerError
from apps.accounts.models import TradingAccount
from apps.audit.models import AuditEvent
from tests.accounts.accounts_support import CANARY_SECRET

pytestmark = pytest.mark.django_db


def _accounts(owner, count: int) -> list[TradingAccount]:
    return [
        TradingAccount.objects.create(
            owner=owner,
            name=f"acct {n}",
            kind=TradingAccount.Kind.CCXT,
            exchange_id="binance",
            credentials_encrypted=crypto.encrypt_credentials({"api_key": f"key-{n}", "secret": CANARY_SECRET}),
            credentials_hint=crypto.mask(f"key-{n:016d}"),
        )
        for n in range(count)
    ]


def _rotate() -> str:
    out = StringIO()
    call_command("rotate_secrets", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_rotation_new_key_first_then_old_key_removed_all_decrypt(alice, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    accounts = _accounts(alice, 100)
    TradingAccount.objects.create(owner=alice, name="paper", kind="paper")  # no credentials: skipped

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert "rotated 100, already current 0, unreadable 0" in _rotate()
    # idempotent: nothing left to rotate
    assert "rotated 0, already current 100, unreadable 0" in _rotate()

    settings.FIELD_ENCRYPTION_KEYS = [new]
    for account in TradingAccount.objects.filter(pk__in=[a.pk for a in accounts]):
        assert crypto.decrypt_credentials(account.credentials_encrypted)["secret"] == CANARY_SECRET
        assert account.status == TradingAccount.Status.ACTIVE


def test_tampered_token_marks_that_account_needs_reconnect_and_the_run_goes_on(alice, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    first, broken, last = _accounts(alice, 3)
    token = broken.credentials_encrypted
    tampered = "y" if token[20] == "x" else "x"  # a different character, whatever the token holds
    TradingAccount.objects.filter(pk=broken.pk).update(credentials_encrypted=token[:20] + tampered + token[21:])

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as error:
        call_command("rotate_secrets", stdout=out, stderr=err)
    assert "rotated 2, already current 0, unreadable 1" in out.getvalue()
    assert f"account {broken.pk}" in err.getvalue()
    assert str(broken.pk) in str(error.value)

    broken.refresh_from_db()
    assert broken.status == TradingAccount.Status.NEEDS_RECONNECT
    assert AuditEvent.objects.filter(action="account.needs_reconnect", target_id=str(broken.pk)).exists()
    settings.FIELD_ENCRYPTION_KEYS = [new]
    for account in (first, last):
        account.refresh_from_db()
        assert account.status == TradingAccount.Status.ACTIVE
        assert crypto.decrypt_credentials(account.credentials_encrypted)["secret"] == CANARY_SECRET


def test_broker_for_an_unreadable_token_marks_needs_reconnect_and_raises_authentication(alice, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    [account] = _accounts(alice, 1)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped too early
    with pytest.raises(AuthenticationBrokerError) as error:
        broker_for(account)
    assert error.value.code == "credentials_unreadable"
    account.refresh_from_db()
    assert account.status == TradingAccount.Status.NEEDS_RECONNECT
    assert "Reconnect" in account.status_reason
