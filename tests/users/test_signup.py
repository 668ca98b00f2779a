"""Sign-up, e-mail verification and password reset through the real allauth views."""

import re

from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from apps.users.models import User
from tests.users.steps import password_login, session_user_id

NEW_PASSWORD = "Zq8!long-pass-xy"
SIGNUP_URL = "/accounts/signup/"
RESET_URL = "/accounts/password/reset/"


def _sign_up(client: Client, email: str):
    return client.post(SIGNUP_URL, {"email": email, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})


def _confirmation_path(body: str) -> str:
    match = re.search(r"https?://testserver(/accounts/confirm-email/[^/\s]+/)", body)
    assert match, f"no confirmation link in: {body}"
    return match.group(1)


def test_signup_sends_confirmation_email_and_login_waits_for_it(client, db):
    # when
    response = _sign_up(client, "carol@example.com")

    # then: the address is not verified yet and a confirmation is in the outbox
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="carol@example.com")
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["carol@example.com"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body
    # mandatory verification: the password alone does not open a session yet
    browser = Client()
    login = password_login(browser, "carol@example.com", NEW_PASSWORD)
    assert login.status_code == 302
    assert login["Location"] == "/accounts/confirm-email/"
    assert session_user_id(browser) is None


def test_signup_confirmation_link_verifies_address_then_login_reaches_dashboard(client, db):
    # given
    _sign_up(client, "carol@example.com")
    link = _confirmation_path(str(mail.outbox[-1].body))

    # when: follow the link and confirm
    page = Client().get(link)
    confirm = Client().post(link)

    # then
    assert page.status_code == 200
    assert confirm.status_code == 302
    assert EmailAddress.objects.get(email="carol@example.com").verified

    browser = Client()
    login = password_login(browser, "carol@example.com", NEW_PASSWORD)
    assert login.status_code == 302
    assert login["Location"] == "/"
    assert session_user_id(browser) == str(User.objects.get(email="carol@example.com").pk)
    assert browser.get("/").status_code == 200


def test_signup_with_registered_email_answers_like_a_new_one(db, alice):
    # when: one new address and one that belongs to alice
    new = _sign_up(Client(), "carol@example.com")
    taken = _sign_up(Client(), "alice@example.com")

    # then: the same redirect, the same page (but for the address), no second account
    assert (taken.status_code, taken["Location"]) == (new.status_code, new["Location"])
    new_page = Client().get(new["Location"])
    taken_page = Client().get(taken["Location"])
    assert taken_page.status_code == new_page.status_code == 200
    assert User.objects.filter(email="alice@example.com").count() == 1
    # alice is told by e-mail, not the stranger on the page
    assert [m.to for m in mail.outbox] == [["carol@example.com"], ["alice@example.com"]]
    assert "/accounts/confirm-email/" not in mail.outbox[1].body


def test_signup_with_registered_email_page_does_not_reveal_the_account(db, alice):
    # given: the same browser sees the message after posting
    new_client, taken_client = Client(), Client()

    # when
    new = _sign_up(new_client, "carol@example.com")
    taken = _sign_up(taken_client, "alice@example.com")
    new_html = new_client.get(new["Location"]).content.decode()
    taken_html = taken_client.get(taken["Location"]).content.decode()

    # then: identical once the typed address is taken out
    assert new_html.replace("carol@example.com", "ADDRESS") == taken_html.replace("alice@example.com", "ADDRESS")


def test_password_reset_answers_the_same_for_unknown_and_known_email(db, alice):
    # when
    unknown = Client().post(RESET_URL, {"email": "nobody@example.com"})
    known = Client().post(RESET_URL, {"email": "alice@example.com"})

    # then
    assert unknown.status_code == known.status_code == 302
    assert unknown["Location"] == known["Location"] == "/accounts/password/reset/done/"
    # only the real account gets a reset link
    by_recipient = {m.to[0]: m.body for m in mail.outbox}
    assert "/accounts/password/reset/key/" in by_recipient["alice@example.com"]
    assert "/accounts/password/reset/key/" not in by_recipient.get("nobody@example.com", "")


def test_signup_writes_signed_up_audit_event(client, db):
    from apps.audit.models import AuditEvent

    _sign_up(client, "carol@example.com")

    user = User.objects.get(email="carol@example.com")
    assert AuditEvent.objects.filter(action="user.signed_up", user=user, actor=user).count() == 1


def test_password_reset_link_sets_new_password_and_2fa_still_asks_for_code(db, alice, password, enable_2fa):
    # given: alice has a second factor and asks for a reset
    enable_2fa(alice)
    browser = Client()
    browser.post(RESET_URL, {"email": alice.email})
    match = re.search(r"https?://testserver(/accounts/password/reset/key/\S+/)", str(mail.outbox[-1].body))
    assert match

    # when: she follows the link and sets a new password
    form_page = browser.get(match.group(1), follow=True)
    set_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else match.group(1)
    done = browser.post(set_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    # then: not signed in by the reset; the new password works, the old one does not; the
    # session still has to pass the second step
    assert done.status_code == 302
    assert done["Location"] == "/accounts/password/reset/key/done/"
    assert session_user_id(browser) is None
    old = Client()
    password_login(old, alice.email, password)
    assert session_user_id(old) is None
    new = Client()
    password_login(new, alice.email, NEW_PASSWORD)
    assert session_user_id(new) == str(alice.pk)
    page = new.get("/")
    assert page.status_code == 302
    assert page["Location"].startswith("/2fa/verify/")
