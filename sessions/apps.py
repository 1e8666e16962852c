from django.apps import AppConfig


class ConsultationsConfig(AppConfig):
    # The package is ``sessions`` but the label must not clash with
    # django.contrib.sessions.
    name = "sessions"
    label = "consultations"
    verbose_name = "Consultations"
    default_auto_field = "django.db.models.BigAutoField"
