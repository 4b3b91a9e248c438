import django.contrib.postgres.fields
from django.db import migrations, models

import apps.accounts.scopes


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [
        # Keys made before there were scopes keep doing everything they did: all scopes.
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    choices=[
                        ("read", "read: messages and jobs"),
                        ("write", "write: ingest, feedback, re-run"),
                        ("verify", "verify: address validation and jobs"),
                    ],
                    max_length=16,
                ),
                default=apps.accounts.scopes.all_scopes,
                size=None,
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(
                condition=models.Q(scopes__contained_by=["read", "write", "verify"]),
                name="apikey_known_scopes",
            ),
        ),
    ]
