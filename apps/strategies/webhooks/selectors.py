"""Reads of webhooks for their owner: another user's deployment is a 404 (via the deployment
selector), its attempts are never listed."""

from django.db.models import QuerySet

from apps.strategies.models import Deployment, DeploymentWebhook, WebhookSignal
from apps.strategies.selectors import deployment_get_for_user
from apps.users.models import User


def webhook_get_for_user(*, user: User, deployment_id: int) -> tuple[Deployment, DeploymentWebhook | None]:
    """The user's deployment and its webhook (None when never enabled); NotFound otherwise."""
    deployment = deployment_get_for_user(user=user, deployment_id=deployment_id)
    return deployment, DeploymentWebhook.objects.filter(deployment=deployment).first()


def webhook_signal_list_for_user(*, user: User, deployment_id: int) -> QuerySet[WebhookSignal]:
    """The attempts on the user's deployment's webhook, newest first; NotFound for another's."""
    deployment = deployment_get_for_user(user=user, deployment_id=deployment_id)
    return webhook_signals_of(deployment=deployment)


def webhook_signals_of(*, deployment: Deployment) -> QuerySet[WebhookSignal]:
    """The attempts of a deployment the caller already scoped to its owner."""
    return WebhookSignal.objects.filter(deployment=deployment).select_related("order").order_by("-created_at", "-pk")
