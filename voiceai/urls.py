from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sessions.api.batch import BatchTranscriptionView
from voiceai import error_views
from voiceai.ops import health
from voiceai.ops.observability import metrics_view

api_v1 = [
    path("transcriptions/", BatchTranscriptionView.as_view(), name="api-transcriptions"),
    path("", include("sessions.api.urls")),
    path("", include("notes.api.urls")),
    path("", include("clinics.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    # Before the admin's own routes: see admin_shortcut_disabled.
    path("admin/r/<path:rest>", error_views.admin_shortcut_disabled),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    # Browsers ask for /favicon.ico on pages without an icon link (and a 404
    # there is a console error on every such page).
    path("favicon.ico", RedirectView.as_view(url=static("console/favicon.svg"), permanent=True)),
    path("", include("sessions.web.urls")),  # the console (root = record page)
]

# JSON errors under /api/, Django's pages elsewhere.
handler404 = "voiceai.error_views.not_found"
handler500 = "voiceai.error_views.server_error"
