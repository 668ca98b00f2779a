"""A signed-in user who has a second factor gets nothing until this session is verified."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode

from apps.users.selectors import user_has_second_factor

# Paths an unverified session may still reach: the second step itself, logging out, static
# files, and the health endpoints (which hold no user data).
OPEN_PREFIXES = ("/2fa/verify/", "/accounts/logout/", "/static/", "/healthz", "/metrics")


class SecondFactorRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not user.is_verified()
            and not request.path.startswith(OPEN_PREFIXES)
            and user_has_second_factor(user=user)
        ):
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {
                        "error": {
                            "code": "second_factor_required",
                            "message": "Verify your second factor to continue: /2fa/verify/",
                        }
                    },
                    status=403,
                )
            next_url = request.get_full_path()
            return HttpResponseRedirect(f"{reverse('two_factor_verify')}?{urlencode({'next': next_url})}")
        return self.get_response(request)
