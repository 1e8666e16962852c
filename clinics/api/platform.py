"""Tenant management for platform staff (superusers): create,
suspend and reactivate clinics and set their limits. API keys never reach
these views; other users get 403 on the collection and 404 on objects."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.api.base import PlatformStaffAPIView, validated_data
from clinics.api.schema import error_response
from clinics.api.serializers import (
    QuotaPatchSerializer,
    QuotaUsageSerializer,
    StaffClinicCreateSerializer,
    StaffClinicPatchSerializer,
    StaffClinicSerializer,
)
from clinics.selectors import clinic_get, clinic_list
from clinics.services import clinic_create, clinic_reactivate, clinic_suspend, clinic_update, quota_update
from sessions.selectors import quota_with_usage

CLINIC_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Clinic id.")
ERRORS = {
    401: error_response("Not signed in."),
    403: error_response("Not platform staff."),
}
NOT_FOUND = {404: error_response("No such clinic (or not platform staff).")}


class ClinicsListView(PlatformStaffAPIView):
    serializer_class = StaffClinicSerializer

    @extend_schema(operation_id="clinics_list", responses={200: StaffClinicSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(clinic_list())
        return self.get_paginated_response(StaffClinicSerializer(page, many=True).data)

    @extend_schema(
        operation_id="clinics_create",
        request=StaffClinicCreateSerializer,
        responses={201: StaffClinicSerializer, 409: error_response("Slug taken."), **ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = validated_data(StaffClinicCreateSerializer, request.data)
        clinic = clinic_create(actor=self.actor, **data)
        return Response(StaffClinicSerializer(clinic).data, status=status.HTTP_201_CREATED)


class ClinicsDetailView(PlatformStaffAPIView):
    serializer_class = StaffClinicSerializer

    @extend_schema(
        operation_id="clinics_retrieve",
        parameters=[CLINIC_ID],
        responses={200: StaffClinicSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(StaffClinicSerializer(clinic_get(clinic_id=id)).data)

    @extend_schema(
        operation_id="clinics_update",
        parameters=[CLINIC_ID],
        request=StaffClinicPatchSerializer,
        responses={200: StaffClinicSerializer, **ERRORS, **NOT_FOUND},
    )
    def patch(self, request: Request, id: str) -> Response:
        clinic = clinic_get(clinic_id=id)
        data = validated_data(StaffClinicPatchSerializer, request.data, partial=True)
        return Response(StaffClinicSerializer(clinic_update(clinic=clinic, actor=self.actor, **data)).data)


class ClinicSuspendView(PlatformStaffAPIView):
    serializer_class = StaffClinicSerializer

    @extend_schema(
        operation_id="clinics_suspend",
        parameters=[CLINIC_ID],
        request=None,
        description="Every key and user of the clinic gets 403 `clinic_suspended` afterwards.",
        responses={200: StaffClinicSerializer, **ERRORS, **NOT_FOUND},
    )
    def post(self, request: Request, id: str) -> Response:
        clinic = clinic_suspend(clinic=clinic_get(clinic_id=id), actor=self.actor)
        return Response(StaffClinicSerializer(clinic).data)


class ClinicReactivateView(PlatformStaffAPIView):
    serializer_class = StaffClinicSerializer

    @extend_schema(
        operation_id="clinics_reactivate",
        parameters=[CLINIC_ID],
        request=None,
        responses={200: StaffClinicSerializer, **ERRORS, **NOT_FOUND},
    )
    def post(self, request: Request, id: str) -> Response:
        clinic = clinic_reactivate(clinic=clinic_get(clinic_id=id), actor=self.actor)
        return Response(StaffClinicSerializer(clinic).data)


class ClinicQuotaView(PlatformStaffAPIView):
    serializer_class = QuotaUsageSerializer

    def _body(self, clinic: Any) -> dict[str, Any]:
        return QuotaUsageSerializer(quota_with_usage(clinic=clinic)).data

    @extend_schema(
        operation_id="clinics_quota_retrieve",
        parameters=[CLINIC_ID],
        responses={200: QuotaUsageSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(self._body(clinic_get(clinic_id=id)))

    @extend_schema(
        operation_id="clinics_quota_update",
        parameters=[CLINIC_ID],
        request=QuotaPatchSerializer,
        responses={200: QuotaUsageSerializer, **ERRORS, **NOT_FOUND},
    )
    def patch(self, request: Request, id: str) -> Response:
        clinic = clinic_get(clinic_id=id)
        data = validated_data(QuotaPatchSerializer, request.data, partial=True)
        quota_update(clinic=clinic, actor=self.actor, **data)
        return Response(self._body(clinic))
