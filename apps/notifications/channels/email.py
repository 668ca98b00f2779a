"""E-mail through Django's mail backend (EMAIL_URL; the tests use locmem)."""

import smtplib

from django.conf import settings
from django.core.mail import send_mail

from apps.notifications.channels import Message, PermanentDeliveryError, TemporaryDeliveryError


def send(address: str, message: Message) -> None:
    if not address:
        raise PermanentDeliveryError("The account has no e-mail address.")
    subject = f"{getattr(settings, 'ACCOUNT_EMAIL_SUBJECT_PREFIX', '')}{message.title}"[:200]
    try:
        send_mail(subject, message.body or message.title, settings.DEFAULT_FROM_EMAIL, [address])
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentDeliveryError(f"The mail server refused the address: {exc}") from exc
    except (OSError, smtplib.SMTPException, TimeoutError) as exc:
        raise TemporaryDeliveryError(f"Mail server: {exc}") from exc
