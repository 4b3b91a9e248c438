from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0002_verification_jobs"),
    ]

    operations = [
        migrations.CreateModel(
            name="MailEvidence",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("address", models.CharField(max_length=320)),
                ("kind", models.CharField(max_length=16)),
                ("seen_at", models.DateTimeField()),
                ("message_id", models.BigIntegerField()),
                ("detail", models.CharField(blank=True, max_length=500)),
            ],
            options={
                "verbose_name_plural": "mail evidence",
                "db_table": "verification_mail_evidence",
                "ordering": ["-seen_at", "-id"],
                "indexes": [
                    models.Index(fields=["address", "seen_at"], name="mail_evidence_address"),
                    models.Index(fields=["seen_at"], name="mail_evidence_seen_at"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("message_id", "address", "kind"), name="mail_evidence_once"
                    ),
                ],
            },
        ),
    ]
