"""The one error map: every domain error declares its HTTP status and its
WebSocket close code, and both transports answer with exactly those."""

import importlib
import json
import pkgutil

import pytest

from transcription.consumers import _RawWebSocketApp
from voiceai.api_errors import exception_handler
from voiceai.errors import Close, DomainError

_SKIP = ("migrations", "settings", "asgi", "serve", "management")


def _import_everything() -> None:
    # Domain errors live next to the services that raise them: load every
    # module so none is left out of the map.
    for package in ("voiceai", "clinics", "sessions", "transcription"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not any(part in module.name.split(".") for part in _SKIP):
                importlib.import_module(module.name)


def _domain_errors() -> list[type[DomainError]]:
    _import_everything()
    found, todo = [], [DomainError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


ERRORS = _domain_errors()
CLOSE_CODES = {v for k, v in vars(Close).items() if k.isupper()}


def test_it_finds_the_errors_of_every_layer():
    modules = {cls.__module__.split(".")[0] for cls in ERRORS}
    assert {"voiceai", "clinics", "sessions", "transcription"} <= modules


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
def test_it_answers_rest_with_the_declared_status(cls):
    exc = cls()
    response = exception_handler(exc, {})
    assert 400 <= cls.status < 600
    assert response.status_code == cls.status
    assert response.data["error"]["code"] == exc.code and response.data["error"]["message"] == exc.message


class _Raises(_RawWebSocketApp):
    error: DomainError

    async def handle(self, scope, receive, ws) -> None:
        raise self.error


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
async def test_it_closes_a_socket_with_the_declared_code(cls):
    assert cls.close_code in CLOSE_CODES and cls.close_code != Close.NORMAL
    exc = cls()
    app = _Raises()
    app.error = exc
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    await app({"type": "websocket", "path": "/ws/test", "headers": []}, receive, send)
    error = json.loads(sent[1]["text"])
    assert error == {"type": "Error", "code": exc.code, "message": exc.message, "retryable": cls.retryable}
    assert sent[2] == {"type": "websocket.close", "code": cls.close_code}
