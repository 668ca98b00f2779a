"""The operators' admin: staff only, and only with a verified second factor."""

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp.admin import OTPAdminSite


class PlatformAdminSite(OTPAdminSite):
    site_header = "Trading platform operations"
    site_title = "Trading platform admin"
    index_title = "Operations"

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """Send people to the portal's own login and 2FA pages instead of the admin form.

        Anonymous users log in through allauth (rate-limited, audited). A signed-in staff user
        without a device is sent to enrol; one with a device but an unverified session is sent
        to the second step. Nobody gets past this without `request.user.is_verified()`.
        """
        next_url = request.GET.get("next") or reverse("admin:index")
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")
        if not user.is_staff or not user.is_active:
            messages.error(request, "This account has no access to the operations console.")
            return HttpResponseRedirect(reverse("dashboard"))
        from apps.users.selectors import user_has_second_factor

        if not user_has_second_factor(user=user):
            messages.warning(request, "Staff must turn on two-factor authentication first.")
            return HttpResponseRedirect(f"{reverse('two_factor_setup')}?{urlencode({'next': next_url})}")
        return HttpResponseRedirect(f"{reverse('two_factor_verify')}?{urlencode({'next': next_url})}")
