"""Domain errors with stable machine codes.

Services and the access layer raise these; the REST layer turns them into
the one documented JSON error shape and the WebSocket layer into close codes.
"""


class DomainError(Exception):
    status = 400
    code = "bad_request"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, code: str | None = None, details: dict | None = None) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        self.details = details or {}
        super().__init__(self.message)


class NotFound(DomainError):
    status = 404
    code = "not_found"
    default_message = "Not found."


class Forbidden(DomainError):
    status = 403
    code = "forbidden"
    default_message = "You do not have permission to do this."


class ClinicSuspended(Forbidden):
    code = "clinic_suspended"
    default_message = "This clinic is suspended. Contact the platform operator."


class Conflict(DomainError):
    status = 409
    code = "conflict"
    default_message = "The object is not in a state that allows this."


class QuotaExceeded(DomainError):
    status = 429
    code = "quota_exceeded"
    default_message = "The clinic's quota is exhausted."


class InvalidInput(DomainError):
    status = 400
    code = "invalid"
    default_message = "The input is not valid."
