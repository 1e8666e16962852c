"""The caller's clinic: settings, members and API keys (admins manage)."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from clinics.access import (
    access_api_key,
    access_membership,
    api_keys_visible_to,
    memberships_visible_to,
    require_admin,
)
from clinics.api.base import ClinicScopedAPIView, validated_data
from clinics.api.schema import error_response
from clinics.api.serializers import (
    CLINIC_FIELDS,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    ClinicPatchSerializer,
    ClinicSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
)
from clinics.services import (
    api_key_create,
    api_key_revoke,
    clinic_update,
    membership_enrol,
    membership_remove,
    membership_update,
)
from sessions.engine_support import clinic_engine, clinic_engine_languages
from sessions.selectors import quota_with_usage

MEMBER_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Membership id.")
KEY_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="API key id.")
ERRORS = {
    401: error_response("Missing or invalid credentials."),
    403: error_response("Clinic suspended or not a clinic admin."),
}
NOT_FOUND = {404: error_response("Not found in your clinic.")}


class ClinicView(ClinicScopedAPIView):
    serializer_class = ClinicSerializer

    def _body(self) -> dict[str, Any]:
        clinic = self.principal.clinic
        instance = {name: getattr(clinic, name) for name in CLINIC_FIELDS}
        instance.update(
            role=self.principal.role,
            quota=quota_with_usage(clinic=clinic),
            engine=clinic_engine(clinic),
            engine_languages=clinic_engine_languages(clinic),
        )
        return ClinicSerializer(instance).data

    @extend_schema(operation_id="clinic_retrieve", responses={200: ClinicSerializer, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(self._body())

    @extend_schema(
        operation_id="clinic_update",
        request=ClinicPatchSerializer,
        responses={200: ClinicSerializer, 400: error_response("Invalid or read-only field."), **ERRORS},
    )
    def patch(self, request: Request) -> Response:
        require_admin(self.principal)
        data = validated_data(ClinicPatchSerializer, request.data, partial=True)
        clinic_update(clinic=self.principal.clinic, actor=self.principal, **data)
        self.principal.clinic.refresh_from_db()
        return Response(self._body())


class MemberListView(ClinicScopedAPIView):
    serializer_class = MemberSerializer

    @extend_schema(operation_id="clinic_members_list", responses={200: MemberSerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(memberships_visible_to(self.principal).order_by("created_at", "id"))
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    @extend_schema(
        operation_id="clinic_members_create",
        request=MemberCreateSerializer,
        responses={201: MemberSerializer, 404: error_response("No such user."), **ERRORS},
    )
    def post(self, request: Request) -> Response:
        require_admin(self.principal)
        data = validated_data(MemberCreateSerializer, request.data)
        membership = membership_enrol(
            clinic=self.principal.clinic,
            username=data["username"],
            email=data.get("email", ""),
            role=data["role"],
            actor=self.principal,
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailView(ClinicScopedAPIView):
    serializer_class = MemberSerializer

    @extend_schema(
        operation_id="clinic_members_retrieve",
        parameters=[MEMBER_ID],
        responses={200: MemberSerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(MemberSerializer(access_membership(self.principal, id)).data)

    @extend_schema(
        operation_id="clinic_members_update",
        parameters=[MEMBER_ID],
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, 409: error_response("Last admin."), **ERRORS, **NOT_FOUND},
    )
    def patch(self, request: Request, id: str) -> Response:
        membership = access_membership(self.principal, id)
        data = validated_data(MemberUpdateSerializer, request.data)
        membership = membership_update(membership=membership, role=data["role"], actor=self.principal)
        return Response(MemberSerializer(membership).data)

    @extend_schema(
        operation_id="clinic_members_remove",
        parameters=[MEMBER_ID],
        responses={204: None, 409: error_response("Last admin."), **ERRORS, **NOT_FOUND},
    )
    def delete(self, request: Request, id: str) -> Response:
        membership_remove(membership=access_membership(self.principal, id), actor=self.principal)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListView(ClinicScopedAPIView):
    serializer_class = ApiKeySerializer

    @extend_schema(operation_id="clinic_api_keys_list", responses={200: ApiKeySerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(api_keys_visible_to(self.principal).order_by("-created_at", "-id"))
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(
        operation_id="clinic_api_keys_create",
        request=ApiKeyCreateSerializer,
        description="Returns the raw key once, in `key`. Only its hash is stored.",
        responses={201: ApiKeyCreatedSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        require_admin(self.principal)
        data = validated_data(ApiKeyCreateSerializer, request.data)
        key, raw = api_key_create(
            clinic=self.principal.clinic,
            role=data["role"],
            name=data["name"],
            created_by=self.principal.user,
            actor=self.principal,
        )
        response = Response({**ApiKeySerializer(key).data, "key": raw}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class ApiKeyDetailView(ClinicScopedAPIView):
    serializer_class = ApiKeySerializer

    @extend_schema(
        operation_id="clinic_api_keys_retrieve",
        parameters=[KEY_ID],
        responses={200: ApiKeySerializer, **ERRORS, **NOT_FOUND},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(ApiKeySerializer(access_api_key(self.principal, id)).data)

    @extend_schema(
        operation_id="clinic_api_keys_revoke",
        parameters=[KEY_ID],
        description="Revokes the key.",
        responses={204: None, **ERRORS, **NOT_FOUND},
    )
    def delete(self, request: Request, id: str) -> Response:
        api_key_revoke(api_key=access_api_key(self.principal, id), actor=self.principal)
        return Response(status=status.HTTP_204_NO_CONTENT)
