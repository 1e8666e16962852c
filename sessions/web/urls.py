from django.contrib.auth import views as auth_views
from django.urls import path

from sessions.web import views

app_name = "console"

urlpatterns = [
    path("", views.record, name="record"),
    path("sessions/", views.session_index, name="session_list"),
    path("sessions/<uuid:session_id>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:session_id>/live/", views.session_live, name="session_live"),
    path("sessions/<uuid:session_id>/delete/", views.session_delete, name="session_delete"),
    path("sessions/<uuid:session_id>/consent/", views.session_consent, name="session_consent"),
    path("sessions/<uuid:session_id>/corrections/", views.segment_correction, name="segment_correction"),
    path("sessions/<uuid:session_id>/confirmations/", views.segment_confirmation, name="segment_confirmation"),
    path("sessions/<uuid:session_id>/speakers/", views.session_speakers, name="session_speakers"),
    path("sessions/<uuid:session_id>/note/", views.note_edit_view, name="note_edit"),
    path("sessions/<uuid:session_id>/note/sign/", views.note_sign_view, name="note_sign"),
    path("sessions/<uuid:session_id>/note/new-version/", views.note_new_version, name="note_new_version"),
    path("sessions/<uuid:session_id>/note/retry/", views.note_retry_view, name="note_retry"),
    path("sessions/<uuid:session_id>/note/generate/", views.note_generate_view, name="note_generate"),
    path("sessions/<uuid:session_id>/note/status/", views.note_status, name="note_status"),
    path(
        "sessions/<uuid:session_id>/consent/withdraw/",
        views.session_consent_withdraw,
        name="session_consent_withdraw",
    ),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("clinic/", views.clinic_pick, name="clinic_pick"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="console:login"), name="logout"),
]
