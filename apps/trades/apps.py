from django.apps import AppConfig


class TradesConfig(AppConfig):
    name = "apps.trades"
    label = "trades"
    verbose_name = "Orders and trades"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from apps.accounts.signals import paper_orders_changed
        from apps.trades import receivers

        paper_orders_changed.connect(receivers.on_paper_orders_changed, dispatch_uid="trades.paper_orders_changed")
        worker_ready.connect(receivers.on_worker_ready, dispatch_uid="trades.worker_ready", weak=False)

        from apps.notifications.services.summaries import register_summary_provider
        from apps.trades import signals

        signals.fill_recorded.connect(receivers.on_fill_recorded_notify, dispatch_uid="trades.notify_fill")
        signals.order_changed.connect(receivers.on_order_changed_notify, dispatch_uid="trades.notify_rejected")
        register_summary_provider(receivers.daily_summary_lines)
