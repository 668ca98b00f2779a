"""TradingView webhooks over HTTP: the public endpoint, and the owner's buttons on the
deployment page.

``tradingview_hook`` is the endpoint alerts are sent to: CSRF-exempt, sessionless (it never
reads the session or the user), POST only, JSON in and out, and it acts only on the deployment
its token names (apps.strategies.webhooks.services.webhook_receive). The secret is never echoed.

The owner's enable / rotate render a page that shows the URL and the secret once (with a
TradingView alert message to paste); disable goes back to the deployment page, whose webhook
section (templates/strategies/_webhook_section.html) lists the attempts, live over the
websocket (static/js/webhooks.js).
"""

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.audit.services import client_ip
from apps.common.errors import ApplicationError, NotFound
from apps.strategies.models import Deployment, DeploymentWebhook
from apps.strategies.webhooks import selectors
from apps.strategies.webhooks import services as webhook_services
from apps.users.requests import AuthenticatedHttpRequest

SIGNATURE_HEADER = "X-Signature"


@csrf_exempt
@never_cache
def tradingview_hook(request: HttpRequest, token: str) -> JsonResponse:
    if request.method != "POST":
        response = JsonResponse({"error": {"code": "method_not_allowed", "message": "POST a JSON body."}}, status=405)
        response["Allow"] = "POST"
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": {"code": "body_too_large", "message": "The body is too large."}}, status=413)
    answer = webhook_services.webhook_receive(
        token=token,
        body=body,
        signature=request.headers.get(SIGNATURE_HEADER),
        remote_addr=client_ip(request),
    )
    return JsonResponse(answer.body, status=answer.status)


def hook_url(request: HttpRequest, webhook: DeploymentWebhook) -> str:
    return request.build_absolute_uri(reverse("tradingview-hook", args=[webhook.token]))


def alert_message(*, deployment: Deployment, secret: str, symbol: str) -> str:
    """A TradingView alert message for this deployment, with the secret in it."""
    return json.dumps(
        {
            "secret": secret,
            "action": "{{strategy.order.action}}",
            "symbol": symbol or "{{ticker}}",
            "timestamp": "{{timenow}}",
            "nonce": "{{ticker}}-{{timenow}}-{{strategy.order.id}}",
        },
        indent=2,
    )


def _deployment_or_404(request: AuthenticatedHttpRequest, deployment_id: int) -> tuple[Deployment, Any]:
    try:
        return selectors.webhook_get_for_user(user=request.user, deployment_id=deployment_id)
    except NotFound:
        raise Http404("No such deployment.") from None


def _secret_page(
    request: AuthenticatedHttpRequest, deployment: Deployment, webhook: DeploymentWebhook, secret: str
) -> HttpResponse:
    instrument = deployment.instruments.order_by("pk").first()
    symbol = instrument.symbol if instrument else ""
    response = render(
        request,
        "strategies/_webhook_secret.html",
        {
            "deployment": deployment,
            "webhook": webhook,
            "hook_url": hook_url(request, webhook),
            "secret": secret,
            "alert_message": alert_message(deployment=deployment, secret=secret, symbol=symbol.replace("/", "")),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def webhook_action(request: AuthenticatedHttpRequest, deployment_id: int, action: str) -> HttpResponse:
    deployment, _ = _deployment_or_404(request, deployment_id)
    here = reverse("strategies:deployment-detail", args=[deployment.pk]) + "#webhook"
    try:
        if action == "enable":
            webhook, secret = webhook_services.webhook_enable(deployment=deployment, actor=request.user)
            if secret is not None:
                return _secret_page(request, deployment, webhook, secret)
            messages.success(request, "Webhook enabled again, with the same URL and secret.")
        elif action == "rotate":
            webhook, secret = webhook_services.webhook_rotate(deployment=deployment, actor=request.user)
            return _secret_page(request, deployment, webhook, secret)
        elif action == "disable":
            webhook_services.webhook_disable(deployment=deployment, actor=request.user)
            messages.success(request, "Webhook disabled: signals are refused until you enable it.")
        else:
            raise Http404("No such action.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(here)
