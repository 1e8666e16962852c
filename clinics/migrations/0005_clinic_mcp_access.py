"""The MCP server's off-switch (issue 14): AI assistants read a clinic's
consultations only once its admin turns ``mcp_enabled`` on, and then only
with the key roles ``mcp_key_roles`` names (admin keys by default)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("clinics", "0004_clinic_consent_required"),
    ]

    operations = [
        migrations.AddField(
            model_name="clinic",
            name="mcp_enabled",
            field=models.BooleanField(
                default=False,
                help_text="Let AI assistants read this clinic's consultations through the MCP server (/mcp, "
                "read-only, audited).",
            ),
        ),
        migrations.AddField(
            model_name="clinic",
            name="mcp_key_roles",
            field=models.CharField(
                choices=[("admin", "Admin keys only"), ("admin_clinician", "Admin and clinician keys")],
                default="admin",
                help_text="Which API keys may use the MCP server when it is on.",
                max_length=16,
            ),
        ),
    ]
