"""Request types for views that only signed-in users reach (behind login_required or DRF's
IsAuthenticated), so `request.user` is typed as our User."""

from django.http import HttpRequest
from rest_framework.request import Request

from apps.users.models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class AuthenticatedRequest(Request):
    user: User
