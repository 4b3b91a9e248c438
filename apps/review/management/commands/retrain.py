"""manage.py retrain: learn from reviewers' feedback, list model versions, roll back."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.review.retraining import RetrainError, retrain
from apps.triage.engine.encoder import ModelLoadError
from apps.triage.models import ModelVersion


def _percent(value) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, int | float) else "-"


class Command(BaseCommand):
    help = ("Learn from all feedback so far (corrected categories and priorities, approved "
            "replies), evaluate before and after on a labelled set the feedback did not come "
            "from, and activate the new version unless it is worse. --list shows the versions; "
            "--activate VERSION rolls back (or forward); --activate none runs without one.")  # fmt: skip

    def add_arguments(self, parser) -> None:
        parser.add_argument("--list", action="store_true", help="list the model versions")
        parser.add_argument("--activate", metavar="VERSION",
                            help="make VERSION the active one (none: no learned model)")  # fmt: skip
        parser.add_argument("--force", action="store_true",
                            help="activate the new version even if it scores worse")  # fmt: skip
        parser.add_argument("--mailbox", help="labelled mailbox (default: samples/demo.mbox)")
        parser.add_argument("--labels", help="its labels CSV (default: samples/demo_labels.csv)")
        parser.add_argument("--if-new-feedback", action="store_true",
                            help="do nothing when no feedback arrived since the last version")  # fmt: skip

    def handle(self, *args, **options) -> None:
        if options["list"]:
            return self._list()
        if options["activate"]:
            return self._activate(options["activate"])
        try:
            result = retrain(
                mailbox=options["mailbox"], labels=options["labels"], force=options["force"],
                created_by="manage.py retrain", progress=self.stdout.write,
                only_if_new=options["if_new_feedback"],
            )  # fmt: skip
        except (RetrainError, ModelLoadError, OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if result is None:
            return
        before, after = result.before, result.after
        self.stdout.write(f"\n{'':24}{'before':>10}{'after':>10}")
        for name, label in (("category_accuracy", "category accuracy"),
                            ("priority_exact", "priority level agreed"),
                            ("priority_within_one", "priority within one")):  # fmt: skip
            self.stdout.write(f"{label:24}{_percent(before[name]):>10}{_percent(after[name]):>10}")
        self.stdout.write(f"(on {after['messages']} labelled messages; before: "
                          f"{result.version.evaluation['before_version']})")  # fmt: skip
        version = result.version
        if result.activated:
            forced = " (forced: it scores worse)" if version.evaluation.get("forced") else ""
            self.stdout.write(self.style.SUCCESS(
                f"\n{version.name} is active{forced}: workers use it from their next batch."
            ))  # fmt: skip
        else:
            worse = ", ".join(version.evaluation["worse"])
            self.stdout.write(self.style.WARNING(
                f"\n{version.name} was recorded but not activated: it is worse on {worse}. "
                f"Activate it anyway with `manage.py retrain --activate {version.name}`, or "
                "retrain with --force."
            ))  # fmt: skip

    def _list(self) -> None:
        versions = list(ModelVersion.objects.order_by("created_at"))
        if not versions:
            self.stdout.write("No model versions yet: `manage.py retrain` makes the first.")
            return
        self.stdout.write(f"{'version':10}{'active':8}{'created':18}{'feedback':>9}"
                          f"{'category':>18}{'priority':>18}")  # fmt: skip
        for version in versions:
            evaluation = version.evaluation or {}
            before, after = evaluation.get("before", {}), evaluation.get("after", {})
            category = (f"{_percent(before.get('category_accuracy'))} -> "
                        f"{_percent(after.get('category_accuracy'))}")  # fmt: skip
            priority = (f"{_percent(before.get('priority_exact'))} -> "
                        f"{_percent(after.get('priority_exact'))}")  # fmt: skip
            self.stdout.write(f"{version.name:10}{'yes' if version.active else '':8}"
                              f"{version.created_at:%Y-%m-%d %H:%M}  {version.feedback_count:>9}"
                              f"{category:>18}{priority:>18}")  # fmt: skip

    def _activate(self, name: str) -> None:
        if name.lower() == "none":
            ModelVersion.deactivate_all()
            self.stdout.write("No learned model is active: triage uses the configured "
                              "categories alone.")  # fmt: skip
            return
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            known = ", ".join(
                ModelVersion.objects.order_by("created_at").values_list("name", flat=True)
            )
            raise CommandError(f"No model version {name!r}; known: {known or 'none yet'}.")
        version.activate()
        self.stdout.write(self.style.SUCCESS(f"{version.name} is active: workers use it from "
                                             "their next batch."))  # fmt: skip
