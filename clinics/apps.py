from django.apps import AppConfig


class ClinicsConfig(AppConfig):
    name = "clinics"
    verbose_name = "Clinics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from clinics.logins import on_login_failed

        user_login_failed.connect(on_login_failed, dispatch_uid="clinics.login_failure_audit")
