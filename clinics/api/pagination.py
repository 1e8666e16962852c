"""Pagination of every API list: ``?limit=`` (at most MAX_LIMIT) and
``?offset=``. DRF's own class passed any integer to the database:
``?limit=9223372036854775808`` overflowed PostgreSQL's bigint and was a 500
on every list. Out-of-range values are a 400 that says the range."""

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from voiceai.errors import InvalidInput

MAX_LIMIT = 1000
# Far past any clinic's row count, far below bigint.
MAX_OFFSET = 1_000_000_000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    max_limit: int = MAX_LIMIT

    def get_limit(self, request: Request) -> int | None:
        raw = request.query_params.get(self.limit_query_param)
        if raw is not None:
            _bounded(raw, name=self.limit_query_param, low=1, high=self.max_limit)
        return super().get_limit(request)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        if raw is not None:
            _bounded(raw, name=self.offset_query_param, low=0, high=MAX_OFFSET)
        return super().get_offset(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, MAX_OFFSET)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"] = {**parameter["schema"], "minimum": low, "maximum": high}
        return parameters


def _bounded(raw: str, *, name: str, low: int, high: int) -> int:
    try:
        value = int(raw) if len(raw) <= 20 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidInput(
            f"{name} must be an integer from {low} to {high}.", details={name: f"An integer from {low} to {high}."}
        )
    return value
