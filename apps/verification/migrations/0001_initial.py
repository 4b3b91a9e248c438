from django.db import migrations, models

CREATE_RESULT_TABLE = """
CREATE SEQUENCE verification_result_id_seq;
CREATE TABLE verification_result (
    id bigint NOT NULL DEFAULT nextval('verification_result_id_seq'),
    checked_at timestamptz NOT NULL,
    address varchar(320) NOT NULL,
    domain varchar(255) NOT NULL,
    verdict varchar(16) NOT NULL,
    reason varchar(48) NOT NULL,
    message_id bigint NULL,
    result jsonb NOT NULL,
    duration_ms double precision NOT NULL,
    engine_version varchar(64) NOT NULL,
    PRIMARY KEY (id, checked_at)
) PARTITION BY RANGE (checked_at);
ALTER SEQUENCE verification_result_id_seq OWNED BY verification_result.id;
CREATE INDEX verification_result_address_idx ON verification_result (address, checked_at);
CREATE INDEX verification_result_message_idx ON verification_result (message_id)
    WHERE message_id IS NOT NULL;
"""


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(CREATE_RESULT_TABLE, "DROP TABLE verification_result;")
            ],
            state_operations=[
                migrations.CreateModel(
                    name="VerificationResult",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("checked_at", models.DateTimeField()),
                        ("address", models.CharField(max_length=320)),
                        ("domain", models.CharField(blank=True, max_length=255)),
                        ("verdict", models.CharField(max_length=16)),
                        ("reason", models.CharField(max_length=48)),
                        ("message_id", models.BigIntegerField(blank=True, null=True)),
                        ("result", models.JSONField()),
                        ("duration_ms", models.FloatField()),
                        ("engine_version", models.CharField(blank=True, max_length=64)),
                    ],
                    options={"db_table": "verification_result", "ordering": ["-checked_at", "-id"]},
                ),
            ],
        ),
    ]
