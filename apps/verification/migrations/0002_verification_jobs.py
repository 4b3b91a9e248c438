import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="VerificationJob",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=uuid.uuid4, editable=False, primary_key=True, serialize=False
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                ("source", models.CharField(max_length=8)),
                ("created_by", models.CharField(blank=True, max_length=100)),
                ("total", models.PositiveIntegerField()),
                ("unique", models.PositiveIntegerField()),
                ("shards", models.PositiveSmallIntegerField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("error", models.TextField(blank=True)),
            ],
            options={
                "verbose_name": "verification job",
                "db_table": "verification_job",
                "ordering": ["-created_at"],
            },
        ),
        migrations.CreateModel(
            name="VerificationJobItem",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("position", models.PositiveIntegerField()),
                ("email", models.TextField()),
                ("shard", models.PositiveSmallIntegerField()),
                ("verdict", models.CharField(blank=True, max_length=16)),
                ("reason", models.CharField(blank=True, max_length=48)),
                ("answer", models.JSONField(blank=True, null=True)),
                ("checked_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="items",
                        to="verification.verificationjob",
                    ),
                ),
            ],
            options={
                "db_table": "verification_job_item",
                "ordering": ["job", "position"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("checked_at__isnull", True)),
                        fields=["job", "shard"],
                        name="job_item_pending",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("job", "position"), name="job_item_position")
                ],
            },
        ),
    ]
