"""The operations console for market data: instruments, the stored series (read-only facts),
and "Upload candles", which imports a file through `services.candles_import_file` (validated
whole first; a bad file is refused with its line number and nothing is stored) and audits it.

Candles themselves have no admin page: their composite primary key is not supported by the
admin, and a million rows are not browsed there (the chart shows them).
"""

import tempfile
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from apps.marketdata import services, timeframes
from apps.marketdata.models import CandleSeries, Instrument, ReplayCursor


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("symbol", "venue", "asset_class", "base", "quote", "tick_size", "is_active", "is_synthetic")
    list_filter = ("asset_class", "venue", "is_active", "is_synthetic")
    search_fields = ("=venue", "symbol", "=base", "=quote")
    readonly_fields = ("created_at", "updated_at")


class CandleUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV or CSV.gz (timestamp,open,high,low,close,volume), Binance kline CSV/ZIP, or freqtrade JSON."
    )
    instrument = forms.ModelChoiceField(queryset=Instrument.objects.order_by("venue", "symbol"))
    timeframe = forms.ChoiceField(choices=timeframes.CHOICES)


@admin.register(CandleSeries)
class CandleSeriesAdmin(admin.ModelAdmin):
    """What is stored per (instrument, timeframe): facts, read-only. `is_live` is set by
    deployments; candles arrive by import (the Upload button), backfill, poll or replay."""

    list_display = ("instrument", "timeframe", "count", "first_ts", "last_ts", "source", "is_live", "updated_at")
    list_filter = ("timeframe", "source", "is_live", "instrument__venue")
    search_fields = ("=instrument__venue", "instrument__symbol")
    list_select_related = ("instrument",)
    readonly_fields = ("instrument", "timeframe", "first_ts", "last_ts", "count", "source", "is_live", "updated_at")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        upload = path(
            "upload/",
            self.admin_site.admin_view(self.upload_view),
            name="marketdata_candleseries_upload",
        )
        return [upload, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_upload": self._can_upload(request)}
        return super().changelist_view(request, extra_context=extra)

    def _can_upload(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("marketdata.add_candleseries"))

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self._can_upload(request):
            messages.error(request, "You may not import candles.")
            return HttpResponseRedirect(reverse("admin:marketdata_candleseries_changelist"))
        form = CandleUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                result = _import_upload(
                    request, upload, form.cleaned_data["instrument"], form.cleaned_data["timeframe"]
                )
            except services.CandleImportError as exc:
                form.add_error("file", exc.message)
            else:
                span = f"{result.first:%Y-%m-%d %H:%M} .. {result.last:%Y-%m-%d %H:%M} UTC" if result.rows else "empty"
                messages.success(
                    request,
                    f"{upload.name}: {result.rows} rows read, {result.written} written into "
                    f"{result.instrument} {result.timeframe} ({span}).",
                )
                return HttpResponseRedirect(reverse("admin:marketdata_candleseries_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Upload candles",
            "form": form,
        }
        return TemplateResponse(request, "admin/marketdata/candleseries/upload.html", context)


def _import_upload(request: HttpRequest, upload: Any, instrument: Instrument, timeframe: str) -> services.ImportResult:
    # Saved under its own name (errors name the file) in a private folder, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="candles-upload-") as folder:
        target = Path(folder) / (Path(upload.name).name or "upload.csv")
        with target.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        return services.candles_import_file(
            path=target, instrument=instrument, timeframe=timeframe, actor=request.user, request=request
        )


@admin.register(ReplayCursor)
class ReplayCursorAdmin(admin.ModelAdmin):
    list_display = ("target", "source", "timeframe", "seconds_per_bar", "bars_done", "next_ts", "is_active")
    list_filter = ("is_active", "timeframe")
    list_select_related = ("source", "target")
    readonly_fields = (
        "source",
        "target",
        "timeframe",
        "seconds_per_bar",
        "anchor_at",
        "next_ts",
        "bars_done",
        "is_active",
        "finished_at",
    )
    actions = ("stop_replays",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_stop_permission(self, request: HttpRequest) -> bool:
        # The rows are read-only facts, but stopping a replay is a change: it needs that right.
        return bool(request.user.has_perm("marketdata.change_replaycursor"))

    @admin.action(description="Stop the selected replays", permissions=["stop"])
    def stop_replays(self, request: HttpRequest, queryset: Any) -> None:
        from apps.marketdata.feeds import replay

        for cursor in queryset.filter(is_active=True):
            replay.replay_stop(cursor_id=cursor.pk)
        messages.success(request, "Stopped.")
