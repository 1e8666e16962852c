from django.urls import path

from notes.api import views

urlpatterns = [
    path("sessions/<str:id>/note/", views.SessionNoteView.as_view(), name="api-session-note"),
    path("sessions/<str:id>/note/text/", views.SessionNoteTextView.as_view(), name="api-session-note-text"),
    path("sessions/<str:id>/note/fhir/", views.SessionNoteFhirView.as_view(), name="api-session-note-fhir"),
    path("sessions/<str:id>/note/generate/", views.SessionNoteGenerateView.as_view(), name="api-session-note-generate"),
    path("sessions/<str:id>/note/retry/", views.SessionNoteRetryView.as_view(), name="api-session-note-retry"),
    path("sessions/<str:id>/note/sign/", views.SessionNoteSignView.as_view(), name="api-session-note-sign"),
    path(
        "sessions/<str:id>/transcript/fhir/",
        views.SessionTranscriptFhirView.as_view(),
        name="api-session-transcript-fhir",
    ),
]
