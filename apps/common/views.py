from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from apps.common import health
from apps.common import metrics as platform_metrics


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every part is up; 503 naming the failing parts otherwise."""
    checks = health.run_checks()
    failing = [c.name for c in checks if not c.ok]
    body = {
        "status": "ok" if not failing else "fail",
        "failing": failing,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return JsonResponse(body, status=200 if not failing else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: this process's registry, or in multiprocess mode every process's values
    plus the live queue depths (apps.common.metrics)."""
    return HttpResponse(platform_metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def api_not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": {"code": "not_found", "message": f"No such route: {request.path}"}}, status=404)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": {"code": "not_found", "message": f"No such route: {request.path}"}}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": {"code": "server_error", "message": "Internal error"}}, status=500)
    return render(request, "500.html", status=500)
