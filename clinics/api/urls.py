from django.urls import path

from clinics.api import platform, views

urlpatterns = [
    path("clinic/", views.ClinicView.as_view(), name="api-clinic"),
    path("clinic/members/", views.MemberListView.as_view(), name="api-clinic-members"),
    path("clinic/members/<str:id>/", views.MemberDetailView.as_view(), name="api-clinic-member"),
    path("clinic/api-keys/", views.ApiKeyListView.as_view(), name="api-clinic-api-keys"),
    path("clinic/api-keys/<str:id>/", views.ApiKeyDetailView.as_view(), name="api-clinic-api-key"),
    path("clinics/", platform.ClinicsListView.as_view(), name="api-clinics"),
    path("clinics/<str:id>/", platform.ClinicsDetailView.as_view(), name="api-clinics-detail"),
    path("clinics/<str:id>/suspend/", platform.ClinicSuspendView.as_view(), name="api-clinics-suspend"),
    path("clinics/<str:id>/reactivate/", platform.ClinicReactivateView.as_view(), name="api-clinics-reactivate"),
    path("clinics/<str:id>/quota/", platform.ClinicQuotaView.as_view(), name="api-clinics-quota"),
]
