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
