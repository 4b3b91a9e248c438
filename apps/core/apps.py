from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _create_partitions(sender, using, **kwargs) -> None:
    # Every migrate makes sure the months ahead exist, so ingest keeps working across a month's
    # end even when beat has not run.
    if sender.label != "inbox":
        return
    from django.conf import settings
    from django.utils import timezone

    from apps.core.partitions import ensure_partitions
    from apps.core.retention import retention_days

    ensure_partitions(
        timezone.now(),
        months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
        retention_days=retention_days(),
    )


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        post_migrate.connect(_create_partitions, dispatch_uid="mailscore-create-partitions")
