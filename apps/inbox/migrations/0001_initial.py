from django.db import migrations, models

# Django cannot declare a partitioned table, so the table is created in SQL and the model state
# is declared beside it. Its months are created by apps.core after every migrate.
CREATE_MESSAGE_TABLE = """
CREATE SEQUENCE inbox_message_id_seq;
CREATE TABLE inbox_message (
    id bigint NOT NULL DEFAULT nextval('inbox_message_id_seq'),
    received_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    source varchar(8) NOT NULL,
    source_detail varchar(500) NOT NULL,
    dedupe_key varchar(64) NOT NULL,
    message_id_header varchar(998) NOT NULL,
    from_address varchar(320) NOT NULL,
    from_name varchar(500) NOT NULL,
    subject text NOT NULL,
    sent_at timestamptz NULL,
    size integer NOT NULL CHECK (size >= 0),
    raw bytea NOT NULL,
    parsed jsonb NOT NULL,
    status varchar(16) NOT NULL,
    failed_step varchar(32) NOT NULL,
    failure_reason text NOT NULL,
    runs integer NOT NULL CHECK (runs >= 0),
    category varchar(64) NOT NULL,
    category_confidence double precision NULL,
    category_result jsonb NULL,
    priority varchar(16) NOT NULL,
    priority_score integer NULL,
    priority_result jsonb NULL,
    summary text NOT NULL,
    draft_reply text NOT NULL,
    draft_result jsonb NULL,
    sender_trust varchar(16) NOT NULL,
    sender_verdict varchar(16) NOT NULL,
    sender_result jsonb NULL,
    steps jsonb NOT NULL,
    PRIMARY KEY (id, received_at),
    -- The idempotency key: PostgreSQL requires the partition key in every unique constraint.
    CONSTRAINT inbox_message_dedupe_key UNIQUE (dedupe_key, received_at)
) PARTITION BY RANGE (received_at);
ALTER SEQUENCE inbox_message_id_seq OWNED BY inbox_message.id;
CREATE INDEX inbox_message_status_idx ON inbox_message (status, priority_score);
CREATE INDEX inbox_message_queued_idx ON inbox_message (id) WHERE status = 'queued';
CREATE INDEX inbox_message_category_idx ON inbox_message (category);
"""

DROP_MESSAGE_TABLE = "DROP TABLE inbox_message;"


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(CREATE_MESSAGE_TABLE, DROP_MESSAGE_TABLE)],
            state_operations=[
                migrations.CreateModel(
                    name="Message",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        (
                            "received_at",
                            models.DateTimeField(
                                help_text="The message's Date where it is plausible, otherwise when it was ingested; the month partition it lives in."
                            ),
                        ),
                        ("ingested_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "source",
                            models.CharField(
                                choices=[("api", "API"), ("file", "File"), ("imap", "IMAP")],
                                max_length=8,
                            ),
                        ),
                        ("source_detail", models.CharField(blank=True, max_length=500)),
                        (
                            "dedupe_key",
                            models.CharField(
                                help_text="SHA-256 of the Message-ID, or of the raw bytes without one.",
                                max_length=64,
                            ),
                        ),
                        ("message_id_header", models.CharField(blank=True, max_length=998)),
                        ("from_address", models.CharField(blank=True, max_length=320)),
                        ("from_name", models.CharField(blank=True, max_length=500)),
                        ("subject", models.TextField(blank=True)),
                        ("sent_at", models.DateTimeField(blank=True, null=True)),
                        ("size", models.PositiveIntegerField()),
                        ("raw", models.BinaryField()),
                        (
                            "parsed",
                            models.JSONField(
                                default=dict, help_text="Parsed header fields and the new text."
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("queued", "Queued"),
                                    ("processing", "Processing"),
                                    ("triaged", "Triaged"),
                                    ("needs_review", "Needs review"),
                                    ("failed", "Failed"),
                                ],
                                default="queued",
                                max_length=16,
                            ),
                        ),
                        ("failed_step", models.CharField(blank=True, max_length=32)),
                        ("failure_reason", models.TextField(blank=True)),
                        (
                            "runs",
                            models.PositiveIntegerField(
                                default=1, help_text="How many times the chain started."
                            ),
                        ),
                        ("category", models.CharField(blank=True, max_length=64)),
                        ("category_confidence", models.FloatField(blank=True, null=True)),
                        ("category_result", models.JSONField(blank=True, null=True)),
                        ("priority", models.CharField(blank=True, max_length=16)),
                        ("priority_score", models.IntegerField(blank=True, null=True)),
                        ("priority_result", models.JSONField(blank=True, null=True)),
                        ("summary", models.TextField(blank=True)),
                        ("draft_reply", models.TextField(blank=True)),
                        ("draft_result", models.JSONField(blank=True, null=True)),
                        ("sender_trust", models.CharField(blank=True, max_length=16)),
                        ("sender_verdict", models.CharField(blank=True, max_length=16)),
                        ("sender_result", models.JSONField(blank=True, null=True)),
                        (
                            "steps",
                            models.JSONField(
                                default=dict,
                                help_text="Per step: the model or engine version, duration in ms, attempts, error.",
                            ),
                        ),
                    ],
                    options={"db_table": "inbox_message", "ordering": ["-received_at", "-id"]},
                ),
            ],
        ),
        migrations.CreateModel(
            name="ImapMailbox",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                ("host", models.CharField(max_length=255)),
                ("port", models.PositiveIntegerField(default=993)),
                (
                    "security",
                    models.CharField(
                        choices=[
                            ("ssl", "TLS (IMAPS)"),
                            ("starttls", "STARTTLS"),
                            ("none", "None (loopback)"),
                        ],
                        default="ssl",
                        max_length=8,
                    ),
                ),
                ("username", models.CharField(max_length=255)),
                (
                    "password_env",
                    models.CharField(
                        help_text="Name of the environment variable holding the password.",
                        max_length=100,
                    ),
                ),
                ("folder", models.CharField(default="INBOX", max_length=255)),
                ("enabled", models.BooleanField(default=True)),
                ("uid_validity", models.BigIntegerField(blank=True, null=True)),
                ("last_uid", models.BigIntegerField(default=0)),
                ("last_polled_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
            ],
            options={"db_table": "inbox_imapmailbox", "verbose_name": "IMAP mailbox"},
        ),
    ]
