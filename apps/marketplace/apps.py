from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "apps.marketplace"
    label = "marketplace"
    verbose_name = "Marketplace and copy trading"

    def ready(self) -> None:
        from celery.signals import worker_ready

        from apps.accounts.signals import account_status_changed
        from apps.marketplace import receivers
        from apps.trades.signals import fill_recorded

        fill_recorded.connect(receivers.on_fill_recorded, dispatch_uid="marketplace.fill_recorded")
        account_status_changed.connect(
            receivers.on_account_status_changed, dispatch_uid="marketplace.account_status_changed"
        )
        worker_ready.connect(receivers.on_worker_ready, dispatch_uid="marketplace.worker_ready", weak=False)
