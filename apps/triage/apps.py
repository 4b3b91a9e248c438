from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _configuration_changed(sender, **kwargs) -> None:
    from apps.triage.models import ConfigRevision

    ConfigRevision.bump()


class TriageConfig(AppConfig):
    name = "apps.triage"
    label = "triage"
    verbose_name = "Triage"

    def ready(self) -> None:
        from apps.triage.models import CategoryConfig, ModelVersion, ReplyTemplate, SenderRule

        # Workers compare the revision once per batch and rebuild their configuration when it
        # moved: every change here takes effect without a restart.
        for model in (CategoryConfig, ReplyTemplate, SenderRule, ModelVersion):
            for signal in (post_save, post_delete):
                signal.connect(_configuration_changed, sender=model,
                               dispatch_uid=f"triage-revision-{model.__name__}-{signal is post_save}")  # fmt: skip
