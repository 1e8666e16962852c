"""JSON log lines with the request, clinic and session ids bound as context.

structlog's contextvars carry the ids through both sync views and async
consumers; every stdlib record is rendered by the same processor chain so
Django's, daphne's and our own lines share one shape. Never log audio,
transcript text, patient references, API keys or tokens: log ids and counts.
"""

import logging
import re

import structlog

_shared = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


# Query strings carry credentials (``?token=`` of a stream URL): servers'
# own lines such as uvicorn's '"WebSocket /ws/...?token=..." [accepted]'
# keep the path and lose the query.
_QUERY = re.compile(r"(?<=[\w/])\?[^\s\"']+")


def _redact_query_strings(logger: object, method: str, event_dict: dict) -> dict:
    event = event_dict.get("event")
    if isinstance(event, str) and "?" in event:
        event_dict["event"] = _QUERY.sub("?[redacted]", event)
    return event_dict


def JsonFormatter() -> logging.Formatter:  # noqa: N802 - used as a dictConfig factory
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _redact_query_strings,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


structlog.configure(
    processors=[*_shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
