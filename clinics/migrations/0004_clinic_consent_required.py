"""The consent gate (issue 13): new clinics require the patient's consent
before a session's audio is accepted. Clinics that existed before keep
recording as they did (their integrations send no consent yet) until their
admin turns the setting on: switching it on here would refuse their
producers' next connect, including live sessions reconnecting after this
deploy."""

from django.db import migrations, models


def existing_clinics_keep_recording(apps, schema_editor):
    apps.get_model("clinics", "Clinic").objects.update(consent_required=False)


class Migration(migrations.Migration):
    dependencies = [
        ("clinics", "0003_clinic_producer_grace_minutes"),
    ]

    operations = [
        migrations.AddField(
            model_name="clinic",
            name="consent_required",
            field=models.BooleanField(
                default=True,
                help_text="Record the patient's consent on a session before any of its audio is accepted.",
            ),
        ),
        migrations.RunPython(existing_clinics_keep_recording, migrations.RunPython.noop),
    ]
