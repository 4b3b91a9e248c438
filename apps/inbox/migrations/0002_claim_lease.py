from django.db import migrations, models

# Columns added to the partitioned parent reach every partition.
ADD_CLAIM = """
ALTER TABLE inbox_message ADD COLUMN claim uuid NULL;
ALTER TABLE inbox_message ADD COLUMN lease_expires_at timestamptz NULL;
ALTER TABLE inbox_message ADD COLUMN claims integer NOT NULL DEFAULT 0 CHECK (claims >= 0);
CREATE INDEX inbox_message_lease_idx ON inbox_message (lease_expires_at)
    WHERE status = 'processing';
"""
DROP_CLAIM = """
DROP INDEX inbox_message_lease_idx;
ALTER TABLE inbox_message DROP COLUMN claims;
ALTER TABLE inbox_message DROP COLUMN lease_expires_at;
ALTER TABLE inbox_message DROP COLUMN claim;
"""


class Migration(migrations.Migration):
    dependencies = [("inbox", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(ADD_CLAIM, DROP_CLAIM)],
            state_operations=[
                migrations.AddField(
                    model_name="message",
                    name="claim",
                    field=models.UUIDField(
                        blank=True,
                        null=True,
                        help_text="The chain that holds the message while it is processing; a "
                        "chain whose claim was taken back writes nothing more.",
                    ),
                ),
                migrations.AddField(
                    model_name="message",
                    name="lease_expires_at",
                    field=models.DateTimeField(
                        blank=True,
                        null=True,
                        help_text="When a processing message not heard from goes back to the "
                        "queue.",
                    ),
                ),
                migrations.AddField(
                    model_name="message",
                    name="claims",
                    field=models.PositiveIntegerField(
                        default=0,
                        help_text="How many times a chain claimed the message in this run; past "
                        "MAILSCORE_MAX_CLAIMS it fails instead of going back to the queue.",
                    ),
                ),
            ],
        )
    ]
