"""Start every installation with the packaged taxonomy and reply templates, as rows a team can
edit in the admin."""

from django.db import migrations


def seed(apps, schema_editor) -> None:
    from apps.triage.seeding import seed as seed_configuration

    seed_configuration(
        apps.get_model("triage", "CategoryConfig"),
        apps.get_model("triage", "ReplyTemplate"),
        apps.get_model("triage", "ConfigRevision"),
    )


class Migration(migrations.Migration):
    dependencies = [("triage", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
