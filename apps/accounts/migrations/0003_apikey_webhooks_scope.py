import django.contrib.postgres.fields
from django.db import migrations, models

import apps.accounts.scopes


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_apikey_scopes_expiry"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="apikey",
            name="apikey_known_scopes",
        ),
        migrations.AlterField(
            model_name="apikey",
            name="scopes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    choices=[
                        ("read", "read: messages and jobs"),
                        ("write", "write: ingest, feedback, re-run"),
                        ("verify", "verify: address validation and jobs"),
                        ("webhooks", "webhooks: configure webhook endpoints"),
                    ],
                    max_length=16,
                ),
                default=apps.accounts.scopes.all_scopes,
                size=None,
            ),
        ),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("scopes__contained_by", ["read", "write", "verify", "webhooks"])
                ),
                name="apikey_known_scopes",
            ),
        ),
    ]
