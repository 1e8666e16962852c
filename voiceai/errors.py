"""Domain errors with stable machine codes — and the one error map.

Services and the access layer raise these. Each class declares what it
means on both transports: ``status`` for the REST API (the one documented
JSON error shape, ``voiceai.api_errors``) and ``close_code`` for a
WebSocket (an ``Error`` message, then that close code; ``Close``).
"""


class Close:
    """WebSocket close codes of the streaming protocol (docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1012  # server restarting: reconnect (resume) elsewhere
    INTERNAL = 1011
    PROTOCOL = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    IDLE = 4408
    CONFLICT = 4409
    CONSENT_REQUIRED = 4428  # cf. HTTP 428: record the patient's consent, then connect again
    QUOTA = 4429


class DomainError(Exception):
    status = 400
    close_code = Close.PROTOCOL
    code = "bad_request"
    default_message = "The request is not valid."
    retryable = False  # on a socket: whether the client should connect again

    def __init__(self, message: str | None = None, *, code: str | None = None, details: dict | None = None) -> None:
        self.message = message or self.default_message
        if code:
            self.code = code
        self.details = details or {}
        super().__init__(self.message)


class NotFound(DomainError):
    status = 404
    close_code = Close.NOT_FOUND
    code = "not_found"
    default_message = "Not found."


class Forbidden(DomainError):
    status = 403
    close_code = Close.FORBIDDEN
    code = "forbidden"
    default_message = "You do not have permission to do this."


class ClinicSuspended(Forbidden):
    code = "clinic_suspended"
    default_message = "This clinic is suspended. Contact the platform operator."


class Conflict(DomainError):
    status = 409
    close_code = Close.CONFLICT
    code = "conflict"
    default_message = "The object is not in a state that allows this."


class ConsentRequired(Conflict):
    """The clinic requires the patient's consent before a session's audio
    is accepted, and the session has none recorded."""

    close_code = Close.CONSENT_REQUIRED
    code = "consent_required"
    default_message = "Record the patient's consent for this session before recording."


class QuotaExceeded(DomainError):
    status = 429
    close_code = Close.QUOTA
    code = "quota_exceeded"
    default_message = "The clinic's quota is exhausted."


class InvalidInput(DomainError):
    status = 400
    code = "invalid"
    default_message = "The input is not valid."


class Unavailable(DomainError):
    """A dependency (storage, Redis) failed; nothing was changed. Try again."""

    status = 503
    close_code = Close.INTERNAL
    code = "unavailable"
    default_message = "A service is unavailable; try again."
    retryable = True
