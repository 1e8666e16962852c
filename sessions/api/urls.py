from django.urls import path

from sessions.api import views

urlpatterns = [
    path("search/", views.TranscriptSearchView.as_view(), name="api-search"),
    path("sessions/", views.SessionListCreateView.as_view(), name="api-sessions"),
    path("sessions/<str:id>/", views.SessionDetailView.as_view(), name="api-session"),
    path("sessions/<str:id>/consent/", views.SessionConsentView.as_view(), name="api-session-consent"),
    path("sessions/<str:id>/end/", views.SessionEndView.as_view(), name="api-session-end"),
    path("sessions/<str:id>/stream-token/", views.SessionStreamTokenView.as_view(), name="api-session-stream-token"),
    path("sessions/<str:id>/transcript/", views.SessionTranscriptView.as_view(), name="api-session-transcript"),
    path(
        "sessions/<str:id>/segments/<str:segment_id>/",
        views.SegmentDetailView.as_view(),
        name="api-session-segment",
    ),
    path(
        "sessions/<str:id>/segments/<str:segment_id>/confirm/",
        views.SegmentConfirmView.as_view(),
        name="api-session-segment-confirm",
    ),
    path("sessions/<str:id>/speakers/", views.SessionSpeakersView.as_view(), name="api-session-speakers"),
    path("sessions/<str:id>/audio/", views.SessionAudioView.as_view(), name="api-session-audio"),
]
