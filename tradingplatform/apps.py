from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    """Makes the OTP-enforcing site the default, so every app's ModelAdmin registers on it."""

    default_site = "tradingplatform.admin_site.PlatformAdminSite"
